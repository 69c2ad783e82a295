#!/bin/bash
# On the device machine (after `GPU=1 bash bench/device/prepare.sh` here): the CUDA build and the
# models (setup.sh, GPU=1), then the GPU table (gpu_table.py; GPU_SCRIPT names another, e.g.
# gpu_split.py). Output in $OUT/log.
#   run(command="bash bench/device/gpu_table.sh", carry=[".devbench", "services/proto/mesh"])
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_table_out}; mkdir -p $OUT
(
  GPU=1 bash bench/device/setup.sh > $OUT/setup.log 2>&1 || { tail -40 $OUT/setup.log; exit 1; }
  grep -E "^== |built in|model in|cmake flags" $OUT/setup.log
  echo "setup done ${SECONDS}s"
  export PYTHONPATH=/tmp/devbench/site:$PWD MESH_LLAMA_BIN=/tmp/devbench/bin
  timeout $(( ${GPU_TABLE_S:-590} - SECONDS )) python3 bench/device/${GPU_SCRIPT:-gpu_table.py}
  echo "done ${SECONDS}s"
) 2>&1 | tee $OUT/log

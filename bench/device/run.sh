#!/bin/bash
# On the device machine (see prepare.sh): set up, then bench/split_pinned.py (or BENCH_SCRIPT, e.g.
# split_cores.py); output in $OUT/log.
export PYTHONUNBUFFERED=1
(
  bash bench/device/setup.sh > $OUT/setup.log 2>&1 || { tail -30 $OUT/setup.log; exit 1; }
  echo "setup done ${SECONDS}s"
  export PYTHONPATH=/tmp/devbench/site:$PWD MESH_LLAMA_BIN=/tmp/devbench/bin BENCH_MODEL=/tmp/devbench/models/Dense-1G.gguf
  timeout 540 python3 bench/${BENCH_SCRIPT:-split_pinned.py}
  echo "done ${SECONDS}s"
) 2>&1 | tee $OUT/log

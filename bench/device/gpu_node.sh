#!/bin/bash
# On the device machine (after `GPU=1 bash bench/device/prepare.sh` here): the CUDA build and the
# 8B-shaped model (setup.sh, GPU=1), then one node serving it (gpu_node.py). Output in $OUT/log.
#   run(command="bash bench/device/gpu_node.sh", carry=[".devbench", "services/proto/mesh"], kind="nvidia-h200")
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_node_out}; mkdir -p $OUT
(
  GPU=1 bash bench/device/setup.sh > $OUT/setup.log 2>&1 || { tail -40 $OUT/setup.log; exit 1; }
  grep -E "^== |built in|model in|CUDA|cmake flags" $OUT/setup.log
  echo "setup done ${SECONDS}s"
  export PYTHONPATH=/tmp/devbench/site:$PWD MESH_LLAMA_BIN=/tmp/devbench/bin GPU_MODEL=/tmp/devbench/models/Dense-8B.gguf
  python3 -c "import services.cli.main, services.gateway.server, services.gossip.server, services.placement.server, services.runner.server; print('node imports ok')" || exit 1
  timeout ${GPU_NODE_S:-400} python3 bench/device/gpu_node.py
  echo "done ${SECONDS}s"
) 2>&1 | tee $OUT/log
cp /tmp/devbench/build.log $OUT/build.log 2>/dev/null; true

#!/bin/bash
# On the device machine (after `GPU=1 bash bench/device/prepare.sh` here): the CUDA build and the
# models, then the GPU split (gpu_split.py) through gpu_table.sh. Output in $OUT/log.
#   run(command="bash bench/device/gpu_split.sh", carry=[".devbench", "services/proto/mesh"])
GPU_SCRIPT=gpu_split.py GPU_TABLE_S=${GPU_SPLIT_S:-590} OUT=${OUT:-/tmp/gpu_split_out} exec bash bench/device/gpu_table.sh

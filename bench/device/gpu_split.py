#!/usr/bin/env python3
"""GPU benchmark (issue 21, acceptance 2): a dense split on one GPU machine, the mesh vs stock
llama.cpp RPC, and the split's load time vs the model alone.

Two mesh nodes on this machine (127.0.0.2 and .3, `--split`, as shipped: both speak TLS in RPC, so
the host's llama-server reaches the worker's rpc-server directly), both using the one GPU, and a
stock llama.cpp RPC split with the same blocks (llama-server --rpc to a plain ggml-rpc-server, no
mesh, no priming: the host sends the worker its weights on load). Rows:
- decode: PAIRS pairs of streamed requests (MAX_TOKENS tokens), mesh and stock back to back in
  alternating order; the ratio is the median of the pairs' ratios, with quartiles;
- load: seconds from llama-server's start to ready (the runner's "child ready" line for the mesh's
  host, its worker's cache primed from its own file first, which the row also gives; the same span
  for stock RPC, weights sent over TCP; and for the model alone on the GPU, llama-server with
  --n-gpu-layers 99).

Run on the device machine after setup (bench/device/gpu_split.sh). Env: GPU_SPLIT_MODEL
(/tmp/devbench/models/Dense-8B.gguf), GPU_SPLIT_PAIRS (12), GPU_SPLIT_TOKENS (128).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import llama_bin, streamed_request, wait_healthy
from bench.split_pipeline import running_stock
from services.runner import binaries
from tests.meshbed import MeshBed, ready_split_host
from tests.nodes import free_port

MODEL_PATH = Path(os.environ.get("GPU_SPLIT_MODEL", "/tmp/devbench/models/Dense-8B.gguf"))
MODEL = MODEL_PATH.stem
PAIRS = int(os.environ.get("GPU_SPLIT_PAIRS", "12"))
TOKENS = int(os.environ.get("GPU_SPLIT_TOKENS", "128"))
READY = re.compile(r"child ready child=llama-server\[[^\]]+\] port=\d+ seconds=([0-9.]+)")
PRIMED = re.compile(r"rpc cache primed .*bytes=(\d+) seconds=([0-9.]+)")
HASHED = re.compile(r"rpc hashes listed .*seconds=([0-9.]+)")


def solo_load() -> float:
    """Seconds from llama-server's start to ready, the model alone on the GPU."""
    port = free_port()
    argv = [str(binaries.binary("llama-server", llama_bin())), "--model", str(MODEL_PATH), "--port", str(port), "--n-gpu-layers", "99", "--ctx-size", "4096"]
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait(30)


def main() -> int:
    print(f"{MODEL_PATH.name}: {MODEL_PATH.stat().st_size / 1e9:.2f} GB; {PAIRS} pairs of {TOKENS}-token answers", flush=True)
    alone = [solo_load() for _ in range(3)]
    print(f"  alone: llama-server ready in {alone} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-split-") as scratch:
        bed = MeshBed(Path(scratch), relayed=False)
        try:
            started = time.monotonic()
            a = bed.start("A", "--model", str(MODEL_PATH), "--split", "--profile", "lan", env={"MESH_NODE_SERVICES_IDLE": "true"})
            b = bed.start("B", "--model", str(MODEL_PATH), "--split", "--profile", "lan", join=a, env={"MESH_NODE_SERVICES_IDLE": "true"})

            bed.wait_until(lambda: ready_split_host((a, b), MODEL) is not None, 900, "split ready")
            found = ready_split_host((a, b), MODEL)
            assert found is not None
            node, assignment = found
            worker = b if node is a else a
            layers = tuple(assignment["layers"])
            host_log, worker_log = node.log_path.read_text(errors="replace"), worker.log_path.read_text(errors="replace")
            mesh_load = float(READY.findall(host_log)[-1])
            primed = sum(int(n) for n, _ in PRIMED.findall(worker_log))
            priming_s = sum(float(t) for _, t in PRIMED.findall(worker_log))
            hashed_s = sum(float(t) for t in HASHED.findall(host_log))
            direct = "rpc direct" in host_log
            print(
                f"  mesh split ready {time.monotonic() - started:.1f} s after the nodes' start; blocks {layers}; host load {mesh_load:.1f} s; "
                f"worker primed {primed / 1e9:.2f} GB; TLS direct: {direct}; rpc_tls {assignment.get('rpc_tls')}",
                flush=True,
            )
            host_gpu = bool(node.status()["devices"])  # a GPU host runs its blocks there, after the worker's (processes.host_last)
            print(f"  host's blocks on its GPU, after the worker's: {host_gpu}", flush=True)
            with running_stock(MODEL_PATH, layers, host_gpu=host_gpu) as (stock_load, stock), httpx.Client(timeout=600) as client:
                print(f"  stock RPC: ready in {stock_load:.1f} s (weights sent over TCP)", flush=True)
                gpu_use = subprocess.run(
                    ["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv"], capture_output=True, text=True, check=False
                )
                print("  GPU memory by process (both splits up):\n    " + gpu_use.stdout.strip().replace("\n", "\n    "), flush=True)
                streamed_request(client, stock, "Warm up.", 8, MODEL)
                streamed_request(client, node.api, "Warm up.", 8, MODEL)
                mine, theirs = [], []
                for i in range(PAIRS):
                    order = [(node.api, mine), (stock, theirs)]
                    for url, into in order if i % 2 == 0 else order[::-1]:
                        into.append(streamed_request(client, url, f"Fact {i} about the sea.", TOKENS, MODEL)[1])
        finally:
            bed.close()
    ratios = [m / s for m, s in zip(mine, theirs, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    solo = min(alone)  # the file in the page cache, as for the splits' loads after it
    print(f"\n| {MODEL} on one GPU, blocks {'/'.join(map(str, layers))} | mesh split | stock RPC | ratio |")
    print("|---|---|---|---|")
    print(
        f"| decode tok/s (median; ratio: median of {PAIRS} pairs, quartiles {q1:.3f}-{q3:.3f}) | {statistics.median(mine):.1f} | {statistics.median(theirs):.1f} | {statistics.median(ratios):.3f} |"
    )
    print(
        f"| load s (llama-server start to ready; alone: {solo:.1f} s) | {mesh_load:.1f} | {stock_load:.1f} | {mesh_load / solo:.2f}x / {stock_load / solo:.2f}x alone |"
    )
    print(f"| worker's share primed from its own file (not sent) | {primed / 1e9:.2f} GB in {priming_s:.1f} s | 0 | |")
    print(f"| host: hashes of the worker's tensors listed (first load of the file; reused after) | {hashed_s:.1f} s | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""GPU benchmark (issue 21, acceptance 2): a dense split on one GPU machine, the mesh vs stock
llama.cpp RPC, and the split's load time vs the model alone.

Two mesh nodes on this machine (127.0.0.2 and .3, `--split`, as shipped: both speak TLS in RPC, so
the host's llama-server reaches the worker's rpc-server directly), both using the one GPU, and a
stock llama.cpp RPC split with the same blocks (llama-server --rpc to a plain ggml-rpc-server, no
mesh, no priming: the host sends the worker its weights on load). Rows:
- decode: PAIRS rounds of one streamed request (MAX_TOKENS tokens) per path, each path first in
  turn: the mesh split through its API and its host's llama-server direct, stock RPC with the mesh
  host's llama-server flags (its argv, read from /proc, with --rpc and --port replaced), the same
  with our patches 0002 (coalesced writes) and 0003 (layer output pinned) on, and with TLS 1.3 (0004)
  too: what the mesh's split adds, one step at a time; and stock RPC with llama.cpp's defaults
  (ctx 4096); ratios: the median of the rounds' ratios to stock RPC
  with the same flags, with quartiles;
- load: seconds from llama-server's start to ready (the runner's "child ready" line for the mesh's
  host, its worker's cache primed from its own file first, which the output also gives; the same
  span for stock RPC, weights sent over TCP; and for the model alone on the GPU, llama-server with
  --n-gpu-layers 99).

Run on the device machine after setup (bench/device/gpu_split.sh). Env: GPU_SPLIT_MODEL
(/tmp/devbench/models/Dense-8B.gguf), GPU_SPLIT_PAIRS (12), GPU_SPLIT_TOKENS (128).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

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


def host_argv(model_id: str) -> list[str]:
    """The argv of the mesh's split host's llama-server (the one with --rpc serving `model_id`)."""
    for process in psutil.process_iter(["cmdline"]):
        argv = process.info["cmdline"] or []
        if argv and "--rpc" in argv and "--alias" in argv and argv[argv.index("--alias") + 1] == model_id:
            return argv
    raise RuntimeError(f"no llama-server with --rpc serving {model_id}")


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
            flags = host_argv(MODEL)
            print(f"  mesh host's llama-server: {' '.join(flags[1:])}", flush=True)
            with (
                running_stock(MODEL_PATH, layers, host_gpu=host_gpu) as (stock_load, stock),
                running_stock(MODEL_PATH, layers, like=flags) as (same_load, same),
                running_stock(MODEL_PATH, layers, like=flags, patched=True) as (_, patched),
                running_stock(MODEL_PATH, layers, like=flags, patched=True, tls_key=secrets.token_hex(32)) as (_, tls),
                httpx.Client(timeout=600) as client,
            ):
                print(f"  stock RPC: ready in {stock_load:.1f} s, with the mesh's flags {same_load:.1f} s (weights sent over TCP)", flush=True)
                query = ["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv"]
                gpu_use = subprocess.run(query, capture_output=True, text=True, check=False) if shutil.which("nvidia-smi") else None
                if gpu_use is not None:
                    print("  GPU memory by process (all splits up):\n    " + gpu_use.stdout.strip().replace("\n", "\n    "), flush=True)
                state = node.model_state(MODEL)
                assert state is not None, "the split's host serves the model"
                port = state["port"]
                paths = {
                    "mesh split, through its API": node.api,
                    "mesh split, its llama-server direct": f"http://127.0.0.1:{port}",
                    "stock RPC, the mesh's llama-server flags": same,
                    "the same, our patches 0002 and 0003 on": patched,
                    "the same, and TLS 1.3 with a key (0004)": tls,
                    "stock RPC, llama.cpp's defaults (ctx 4096)": stock,
                }
                rates: dict[str, list[float]] = {name: [] for name in paths}
                for url in paths.values():
                    streamed_request(client, url, "Warm up.", 8, MODEL)
                names = list(paths)
                for i in range(PAIRS):
                    for name in names[i % len(names) :] + names[: i % len(names)]:  # each path first in turn
                        rates[name].append(streamed_request(client, paths[name], f"Fact {i} about the sea.", TOKENS, MODEL)[1])
        finally:
            bed.close()
    reference = rates["stock RPC, the mesh's llama-server flags"]
    solo = min(alone)  # the file in the page cache, as for the splits' loads after it
    print(
        f"\n| {MODEL} on one GPU, blocks {'/'.join(map(str, layers))} | decode tok/s (median of {PAIRS}) | x stock RPC with the same flags (median of rounds; quartiles) |"
    )
    print("|---|---|---|")
    for name, measured in rates.items():
        ratios = [m / r for m, r in zip(measured, reference, strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        print(f"| {name} | {statistics.median(measured):.1f} | {statistics.median(ratios):.3f} ({q1:.3f}-{q3:.3f}) |")
    print(f"\n| load (llama-server start to ready) | seconds | x alone ({solo:.1f} s) |")
    print("|---|---|---|")
    print(f"| mesh split, worker primed | {mesh_load:.1f} | {mesh_load / solo:.2f} |")
    print(f"| stock RPC, the mesh's flags (weights sent) | {same_load:.1f} | {same_load / solo:.2f} |")
    print(f"| stock RPC, llama.cpp's defaults (weights sent) | {stock_load:.1f} | {stock_load / solo:.2f} |")
    print(
        f"\nWorker's share primed from its own file (not sent): {primed / 1e9:.2f} GB in {priming_s:.1f} s; host: the hashes of the worker's tensors listed in {hashed_s:.1f} s (first load of the file; reused after)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

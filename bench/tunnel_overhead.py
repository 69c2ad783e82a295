#!/usr/bin/env python3
"""Benchmark: a client node reaching a model on another node through the QUIC HTTP tunnel.

A serves SmolLM2-135M-Instruct, C is a client node. The same streamed requests go to A's
llama-server directly and through C (the tunnel), interleaved, in three setups:
  1. llama-server on all cores: on this one machine, A's and C's gateways then compete with
     llama-server's threads for the CPU (on separate machines they would not);
  2. llama-server on one thread, leaving a core for the mesh's own processes;
  3. as 2, with our UDP relay adding 20 ms each way on the A-C link (RTT +40 ms).
Prints a table per setup and the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MODEL, compare, print_table, run_interleaved
from tests.meshbed import MeshBed
from tests.relay import LinkRule

DELAY = 0.020


def measure(title: str, threads: int | None, delay: float, requests: int, max_tokens: int) -> None:
    if threads:
        os.environ["MESH_RUNNER_THREADS"] = str(threads)
    else:
        os.environ.pop("MESH_RUNNER_THREADS", None)
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch:
        bed = MeshBed(Path(scratch), relayed=delay > 0)
        try:
            a = bed.start("A", "--model", MODEL, "--profile", "lan")
            c = bed.start("C", "--client", "--profile", "lan", join=a)
            port = a.wait_ready(MODEL)["port"]
            bed.wait_until(lambda: "A" in bed.peers_seen_by("C"), 30, "C sees A")
            if delay:
                bed.relay.set_link(bed.ip_of("A"), bed.ip_of("C"), LinkRule(delay=delay))
            paths = {"llama-server direct (on A)": f"http://127.0.0.1:{port}", "C -> A tunnel": c.api}
            results = run_interleaved(paths, requests, max_tokens)
        finally:
            bed.close()
    rows = print_table(f"{title}: {requests} streamed chat requests each, {MODEL}, interleaved", results)
    compare(rows, "llama-server direct (on A)", "C -> A tunnel")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    measure("1. llama-server on all cores", None, 0.0, args.requests, args.max_tokens)
    measure("2. llama-server on 1 thread", 1, 0.0, args.requests, args.max_tokens)
    measure("3. llama-server on 1 thread, +20 ms each way A-C", 1, DELAY, args.requests, args.max_tokens)
    print(f"(setup 3: +{2 * DELAY * 1000:.0f} ms of RTT; goal TTFT added <= 2 RTT + 20 ms = {4 * DELAY * 1000 + 20:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

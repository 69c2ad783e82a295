#!/usr/bin/env python3
"""Check: do idle-priority services keep up while llama-server takes every core?

Gateway, gossip and placement run at SCHED_IDLE on Linux (services/common/cpus.py), which never
preempts a normal thread. The fear: under a long full-CPU generation they starve, gossip misses
probes and peers declare the node dead. Node A serves SmolLM2 and B stands by, both as shipped
(`--profile lan`: a suspect has 2 s to refute); CLIENTS streams of long prompts and 400-token
answers keep A's llama-server busy for SECONDS while this script reads both nodes' views of each
other and times /api/status. Rows: services at idle priority, then at normal priority.

Env: BENCH_SECONDS (40), BENCH_CLIENTS (3).
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import SMOLLM2
from tests.meshbed import MeshBed

SECONDS = float(os.environ.get("BENCH_SECONDS", "40"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "3"))


def load(port: int, until: float) -> None:
    with httpx.Client(timeout=300) as client:
        while time.monotonic() < until:
            client.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"model": SMOLLM2, "max_tokens": 400, "messages": [{"role": "user", "content": "Write a long story about the sea. " * 40}]},
            )


def measure(idle: bool) -> tuple[collections.Counter, list[float]]:
    env = {"MESH_NODE_SERVICES_IDLE": "true" if idle else "false"}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch:
        bed = MeshBed(Path(scratch), relayed=False)
        try:
            a = bed.start("A", "--model", SMOLLM2, "--profile", "lan", env=env)
            bed.start("B", "--standby", "--profile", "lan", join=a, env=env)
            port = a.wait_ready(SMOLLM2)["port"]
            bed.wait_until(lambda: bed.all_see_each_other(["A", "B"]), 30, "A and B in one mesh")
            until = time.monotonic() + SECONDS
            clients = [threading.Thread(target=load, args=(port, until)) for _ in range(CLIENTS)]
            for client in clients:
                client.start()
            views: collections.Counter = collections.Counter()
            status_times: list[float] = []
            while time.monotonic() < until:
                for name, other in (("A", "B"), ("B", "A")):
                    started = time.monotonic()
                    views[bed.peers_seen_by(name).get(other, "missing or no answer")] += 1
                    status_times.append(time.monotonic() - started)
                time.sleep(0.2)
            for client in clients:
                client.join()
            return views, sorted(status_times)
        finally:
            bed.close()


def main() -> int:
    print(f"\n{SECONDS:.0f} s of {CLIENTS} long generations on node A; each node's view of the other every 0.2 s")
    print("| services | views: alive | views: suspect, dead or missing | /api/status p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for idle in (True, False):
        views, took = measure(idle)
        bad = sum(count for state, count in views.items() if state != "alive")
        print(
            f"| {'idle priority (as shipped)' if idle else 'normal priority'} | {views['alive']} | {bad} | "
            f"{took[len(took) // 2] * 1000:.0f} | {took[int(len(took) * 0.99)] * 1000:.0f} | {took[-1] * 1000:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: rising load on one node and on a 3-node mesh, until the servers are full and beyond.

Closed loop: at each concurrency level, that many clients send streamed chats back to back for
LEVEL_S seconds (SmolLM2, 32 tokens each). Per level: requests per second that completed, TTFT
p50/p99 of those, how many were turned away with 429/503 and whether each carried `Retry-After`,
other errors, and requests that got no answer at all within the client's timeout (the one outcome
that must never happen: excess load is to be refused, not left hanging). The gateways' resident
memory is sampled through the run: it must stay bounded however many requests wait.

Setups: one node serving the model (the clients on its API), and a mesh of three (A and B serving,
C a client node the clients talk to, routing over QUIC). Env: BENCH_LEVELS (1,2,4,8,16,32,64),
BENCH_LEVEL_S (10), BENCH_TIMEOUT_S (60).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil

from bench.common import MODEL, percentile
from tests.meshbed import MeshBed
from tests.nodes import NodeProcess

LEVELS = tuple(int(n) for n in os.environ.get("BENCH_LEVELS", "1,2,4,8,16,32,64").split(","))
LEVEL_S = float(os.environ.get("BENCH_LEVEL_S", "10"))
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT_S", "60"))
MAX_TOKENS = 32


@dataclass
class Level:
    ok: list[float] = field(default_factory=list)  # TTFTs of completed requests
    refused: int = 0  # 429/503
    refused_with_retry_after: int = 0
    errors: int = 0  # any other status, or a stream that broke
    no_answer: int = 0  # the client's timeout passed with no answer


async def one_request(client: httpx.AsyncClient, base: str, n: int, level: Level) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Tell me fact number {n} about the sea."}],
        "stream": True,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "ignore_eos": True,
    }
    started = time.perf_counter()
    try:
        async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
            if response.status_code in (429, 503):
                level.refused += 1
                level.refused_with_retry_after += "retry-after" in response.headers
                await response.aread()
                # As an SDK would: wait what the server asked (capped) before the next try.
                await asyncio.sleep(min(float(response.headers.get("retry-after", "1")), 5.0))
                return
            if response.status_code != 200:
                level.errors += 1
                await response.aread()
                return
            first = 0.0
            ended = False
            async for line in response.aiter_lines():
                if not first and line.startswith("data: {") and '"content":"' in line:
                    first = time.perf_counter() - started
                if line.startswith("data: [DONE]"):
                    ended = True
                if line.startswith("data: {") and '"error"' in line:
                    level.errors += 1
                    return
            if ended:
                level.ok.append(first)
            else:
                level.errors += 1
    except httpx.TimeoutException:
        level.no_answer += 1
    except httpx.HTTPError:
        level.errors += 1


async def run_level(base: str, concurrency: int) -> tuple[Level, float]:
    level = Level()
    deadline = time.perf_counter() + LEVEL_S
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    async with httpx.AsyncClient(timeout=TIMEOUT_S, limits=limits) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await one_request(client, base, next(counter), level)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return level, time.perf_counter() - started


class MemoryWatch:
    """The highest resident memory of the given processes, sampled every 0.2 s."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.peak = max(self.peak, sum(p.memory_info().rss for p in self.processes))
            except psutil.NoSuchProcess:
                return

    def take(self) -> int:
        peak, self.peak = self.peak, 0
        return peak


def gateways(nodes: list[NodeProcess]) -> list[psutil.Process]:
    return [p for node in nodes for p in node.descendants() if "services.gateway" in " ".join(p.cmdline())]


def measure(title: str, base: str, nodes: list[NodeProcess]) -> None:
    watch = MemoryWatch(gateways(nodes))
    print(f"\n{title}\n")
    print("| clients | done/s | TTFT p50 ms | TTFT p99 ms | done | 429/503 (with Retry-After) | errors | no answer | gateway RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        asyncio.run(run_level(base, 1))  # warm-up
        watch.take()
        for concurrency in LEVELS:
            level, wall = asyncio.run(run_level(base, concurrency))
            ttfts = [t * 1000 for t in level.ok] or [0.0]
            print(
                f"| {concurrency} | {len(level.ok) / wall:.1f} | {percentile(ttfts, 0.5):.0f} | {percentile(ttfts, 0.99):.0f} | {len(level.ok)} | "
                f"{level.refused} ({level.refused_with_retry_after}) | {level.errors} | {level.no_answer} | {watch.take() / 1e6:.0f} |",
                flush=True,
            )
    finally:
        watch.stop.set()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mesh-bench-load-") as scratch:
        node = NodeProcess(Path(scratch) / "solo", "--model", MODEL).start()
        try:
            node.wait_ready(MODEL)
            measure("One node (clients on its API)", node.api, [node])
        finally:
            node.stop()
        bed = MeshBed(Path(scratch) / "mesh", relayed=False)
        try:
            a = bed.start("A", "--model", MODEL)
            b = bed.start("B", "--model", MODEL, join=a)
            c = bed.start("C", "--client", join=a)
            for server in (a, b):
                server.wait_ready(MODEL)
            bed.wait_until(lambda: routes(c), 60, "C routes to both servers")
            measure("Mesh of three: A and B serve, clients on C's API", c.api, [a, b, c])
        finally:
            bed.close()
    return 0


def routes(c: NodeProcess) -> bool:
    """C knows two ready servers of the model."""
    try:
        status = c.status()
    except (httpx.HTTPError, ValueError):
        return False
    ready = [peer for peer in status.get("peers", []) if any(m.get("model_id") == MODEL and m.get("state") == "ready" for m in peer.get("models", []))]
    return len(ready) >= 2


if __name__ == "__main__":
    sys.exit(main())

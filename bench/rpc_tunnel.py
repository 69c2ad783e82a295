#!/usr/bin/env python3
"""Benchmark: one token's RPC round trip through a real tunnel, without llama.cpp.

A split's host sends each token a burst (the hidden state and the graph command, ~11 KB with
patches 0002/0003) and waits for the worker's answer (8 KB). Here a worker process (QUIC endpoint
and a server that answers every burst) and a host process (QUIC endpoint and the RPC tunnel) run
as two gateways would, and this process plays llama-server: TURNS bursts with a pause between
them (compute), each timed until its answer is back. Rows: direct TCP to the answering server,
the tunnel with loopback-sized datagrams (16 KiB) and with LAN-sized ones (1452 B, Ethernet).
The gap to direct TCP is what the mesh adds to every token of a split (both gateways, both ways).

Env: BENCH_TURNS (1000).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


BURST, ANSWER = 11_000, 8_192
TURNS = int(os.environ.get("BENCH_TURNS", "1000"))
WARM_UP = 50  # turns not timed
PAUSE = 0.005  # seconds between turns: the endpoints go idle between tokens, as in a split


async def answer_bursts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    got = 0
    while data := await reader.read(1 << 16):
        got += len(data)
        while got >= BURST:
            got -= BURST
            writer.write(b"a" * ANSWER)
    writer.close()


async def worker(home: Path, datagram_bytes: int) -> None:
    from services.gateway.peers.framing import StreamKind
    from services.gateway.tunnel.rpc import RpcTunnelServer
    from tests.integration.test_rpc_tunnel import endpoint

    server = await asyncio.start_server(answer_bursts, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    quic, _ = await endpoint(home, "worker", {StreamKind.RPC: RpcTunnelServer(lambda: {port}).serve}, datagram_bytes)
    print(json.dumps({"address": quic.local().address, "port": port}), flush=True)
    await asyncio.Event().wait()


async def host(home: Path, datagram_bytes: int, address: str, port: int) -> None:
    from services.gateway.tunnel.rpc import RpcTunnels
    from tests.integration.test_rpc_tunnel import endpoint

    _, links = await endpoint(home, "host", datagram_bytes=datagram_bytes)
    tunnel_port = await RpcTunnels(links, lambda *_: None, connect_timeout=10.0).open(address, port)
    print(json.dumps({"port": tunnel_port}), flush=True)
    await asyncio.Event().wait()


async def turns(port: int, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    burst, took = os.urandom(BURST), []
    for _ in range(count + WARM_UP):
        started = time.perf_counter()
        writer.write(burst)
        await reader.readexactly(ANSWER)
        took.append(time.perf_counter() - started)
        await asyncio.sleep(PAUSE)
    writer.close()
    return took[WARM_UP:]  # the first turns warm up (congestion window, caches)


def spawn(*args: str) -> tuple[subprocess.Popen[str], dict]:
    child = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    return child, json.loads(child.stdout.readline())


def cpu_seconds(process: subprocess.Popen[str]) -> float:
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def measure(datagram_bytes: int) -> tuple[list[float], list[float], tuple[float, float]]:
    """(direct TCP turn times, tunnel turn times, CPU seconds per tunnel turn of the host's and the
    worker's gateway) with two fresh gateways."""
    worker_process, answering = spawn("worker", str(datagram_bytes))
    host_process = None
    try:
        host_process, tunnel = spawn("host", str(datagram_bytes), answering["address"], str(answering["port"]))
        direct = asyncio.run(turns(answering["port"], TURNS // 2))
        before = cpu_seconds(host_process), cpu_seconds(worker_process)
        took = asyncio.run(turns(tunnel["port"], TURNS))
        after = cpu_seconds(host_process), cpu_seconds(worker_process)
        ran = len(took) + WARM_UP  # the CPU counts cover the warm-up turns too
        return direct, took, ((after[0] - before[0]) / ran, (after[1] - before[1]) / ran)
    finally:
        for child in (host_process, worker_process):
            if child is not None:
                child.kill()
                child.wait()


def main() -> int:
    if len(sys.argv) > 1:
        home = Path(tempfile.mkdtemp(prefix="mesh-bench-"))
        role, datagram_bytes, *rest = sys.argv[1:]
        asyncio.run(worker(home, int(datagram_bytes)) if role == "worker" else host(home, int(datagram_bytes), rest[0], int(rest[1])))
        return 0
    rows: dict[str, list[float]] = {}
    cpu: dict[str, tuple[float, float]] = {}
    for datagram_bytes in (16384, 1452):
        direct, tunnel, cpu_per_turn = measure(datagram_bytes)
        rows.setdefault("direct TCP", []).extend(direct)
        name = f"tunnel, {datagram_bytes}-byte datagrams"
        rows[name], cpu[name] = tunnel, cpu_per_turn
    direct_median = statistics.median(rows["direct TCP"])
    print(f"\none token's round trip: {BURST} B burst, {ANSWER} B answer, {TURNS} turns {PAUSE * 1000:.0f} ms apart")
    print("| path | median ms | p90 ms | added to direct TCP, ms | CPU ms per turn: host gateway | worker gateway |")
    print("|---|---|---|---|---|---|")
    for name, took in rows.items():
        median, p90 = statistics.median(took), sorted(took)[int(len(took) * 0.9)]
        host_cpu, worker_cpu = (f"{seconds * 1000:.3f}" for seconds in cpu[name]) if name in cpu else ("-", "-")
        print(f"| {name} | {median * 1000:.3f} | {p90 * 1000:.3f} | {(median - direct_median) * 1000:.3f} | {host_cpu} | {worker_cpu} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

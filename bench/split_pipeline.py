#!/usr/bin/env python3
"""Benchmark: a ~1 GB random-weight dense model, alone vs split over two nodes (pipeline over RPC).

Also run with one thread per process (a core left for the two gateways, as on separate machines)
and with LAN-sized QUIC datagrams.

Rows: the model alone on one node; split over two nodes through our QUIC RPC tunnel with the
worker's cache primed from its own disk; the same unprimed (stock llama.cpp RPC: weights sent on
load); the same without our write-coalescing patch (llama.cpp/patches/0002: llama.cpp's own sends,
three per command); and stock llama.cpp RPC with the same layer split over direct TCP (no mesh),
also with our patches 0002 and 0003 on (the layer-output pin: one hidden state per token), and
once more without our --poll 0 (an OpenMP build never reads it: the same program, so that row
shows the noise). For each: load time, bytes sent to the worker on load, and decode tokens/s
(median of 5 streamed requests). The headline ratio, mesh vs stock RPC, is the median over
ROUNDS alternating runs of both, since one run on a small machine varies by 10% or more; then
the same ratio paired: both splits up at once, PAIRS pairs of back-to-back requests in
alternating order (what drifts between runs hits both alike; the idle mesh's services run during
stock's requests too).

Env: BENCH_ROUNDS (3), BENCH_PAIRS (12), BENCH_MODEL.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cached_model, llama_bin, streamed_request, wait_healthy
from services.common import cpus
from services.runner import binaries, rpc_tls
from services.runner.command import llama_server_argv, rpc_server_argv
from services.runner.settings import RunnerSettings
from tests.meshbed import MeshBed, ready_split_host
from tests.nodes import NodeProcess, free_port
from tests.synthetic import DenseShape, write_dense

SHAPE = DenseShape(layers=9, hidden=2048, ffn=5632, heads=16, kv_heads=4)
MODEL = "Dense-1G"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "12"))


def model_file() -> Path:
    if os.environ.get("BENCH_MODEL"):  # a copy written elsewhere (a machine without SmolLM2's GGUF)
        return Path(os.environ["BENCH_MODEL"])
    return cached_model(MODEL, lambda path, tokenizer: write_dense(path, SHAPE, tokenizer))


def decode_rate(base: str) -> float:
    with httpx.Client(timeout=300) as client:
        streamed_request(client, base, "Warm up.", 8, MODEL)
        return statistics.median(streamed_request(client, base, f"Fact {i} about the sea.", 32, MODEL)[1] for i in range(5))


def paired(
    path: Path, layers: tuple[int, ...], cores: tuple[tuple[int, ...], tuple[int, ...]] | None = None, threads: int | None = None
) -> list[tuple[float, float]]:
    """(mesh, stock RPC) decode tokens/s of PAIRS pairs of requests, with both splits up at once and
    the two requests of a pair back to back, in alternating order: what differs from one start of
    the processes to the next on a small machine (their placement, caches, other load) then hits
    both alike. The split not being asked sits idle (its services at idle priority). `cores` and
    `threads` as for split() and stock_rpc()."""
    with running_split(path, prime=True, cores=cores) as (_, node, _), running_stock(path, layers, threads=threads, cores=cores) as (_, base):
        with httpx.Client(timeout=300) as client:
            for url in (node.api, base):
                streamed_request(client, url, "Warm up.", 8, MODEL)
            pairs = []
            for i in range(PAIRS):
                order = (node.api, base) if i % 2 == 0 else (base, node.api)
                rates = {url: streamed_request(client, url, f"Fact {i} about the sea.", 32, MODEL)[1] for url in order}
                pairs.append((rates[node.api], rates[base]))
    return pairs


def tunnel_bytes(node) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{node.api}/metrics", timeout=10).text
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "mesh_rpc_tunnel_bytes_total" and s.labels["direction"] == "sent"
    )


def alone(path: Path) -> tuple[float, float, float, tuple[int, ...]]:
    with tempfile.TemporaryDirectory() as scratch:
        node = NodeProcess(Path(scratch), "--model", str(path))
        started = time.monotonic()
        node.start()
        try:
            node.wait_ready(MODEL, timeout=600)
            return time.monotonic() - started, 0.0, decode_rate(node.api), ()
        finally:
            node.stop()


def split(
    path: Path, prime: bool, extra: dict[str, str] | None = None, cores: tuple[tuple[int, ...], tuple[int, ...]] | None = None
) -> tuple[float, float, float, tuple[int, ...]]:
    """A two-node split; `cores` = (node A's, node B's) CPU cores, as if on two machines."""
    with running_split(path, prime, extra, cores) as (took, node, layers):
        return took, tunnel_bytes(node), decode_rate(node.api), layers


@contextlib.contextmanager
def running_split(
    path: Path, prime: bool, extra: dict[str, str] | None = None, cores: tuple[tuple[int, ...], tuple[int, ...]] | None = None
) -> Iterator[tuple[float, NodeProcess, tuple[int, ...]]]:
    """(seconds to ready, the host node, blocks per node) of a two-node split while it runs."""
    # As shipped: services at idle priority (test nodes turn it off, several of them sharing a machine).
    env = {"MESH_NODE_SERVICES_IDLE": "true"} | ({} if prime else {"MESH_RUNNER_PRIME_RPC_CACHE": "false"}) | (extra or {})
    with tempfile.TemporaryDirectory() as scratch:
        bed = MeshBed(Path(scratch), relayed=False)
        try:
            started = time.monotonic()
            with on_cores(cores[0] if cores else None):
                a = bed.start("A", "--model", str(path), "--split", "--profile", "lan", env=env)
            with on_cores(cores[1] if cores else None):
                b = bed.start("B", "--model", str(path), "--split", "--profile", "lan", join=a, env=env)

            bed.wait_until(lambda: ready_split_host((a, b), MODEL) is not None, 900, "split ready")
            took = time.monotonic() - started
            found = ready_split_host((a, b), MODEL)
            assert found is not None
            node, assignment = found
            yield took, node, tuple(assignment["layers"])
        finally:
            bed.close()


@contextlib.contextmanager
def on_cores(cores: tuple[int, ...] | None):
    """Processes started inside run on `cores` (they inherit this process's affinity); None: as is."""
    if not cores:
        yield
        return
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)


def stock_rpc(
    path: Path,
    layers: tuple[int, ...],
    llama_defaults: bool = False,
    patched: bool = False,
    threads: int | None = None,
    cores: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
) -> tuple[float, float, float, tuple[int, ...]]:
    """llama.cpp's own RPC, direct TCP on loopback, the same blocks on the worker; no mesh. The host
    runs with the runner's flags for split hosts, or with `llama_defaults` without our --poll 0;
    `patched` turns on our write-coalescing and layer-output patches (off: upstream's behaviour);
    `cores` = (llama-server's, rpc-server's) CPU cores."""
    with running_stock(path, layers, llama_defaults, patched, threads, cores) as (took, base):
        return took, float("nan"), decode_rate(base), layers


@contextlib.contextmanager
def running_stock(
    path: Path,
    layers: tuple[int, ...],
    llama_defaults: bool = False,
    patched: bool = False,
    threads: int | None = None,
    cores: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
    host_gpu: bool = False,
    like: list[str] | None = None,
    tls_key: str = "",
) -> Iterator[tuple[float, str]]:
    """(seconds to ready, llama-server's base URL) of stock_rpc's split while it runs (`host_gpu`:
    the host's blocks on its GPU, after the worker's, as a GPU host of the mesh runs them; `like`:
    a mesh host's llama-server argv, run with its --rpc and --port replaced instead; `tls_key`:
    both speak TLS 1.3 with that key, our patch 0004, as a mesh split's do)."""
    rpc_port, api_port = free_port(), free_port()
    threads = threads or RunnerSettings().threads or cpus.math_cores(cores[0] if cores else cpus.node_cpus())  # as the runner picks
    ours = {"GGML_RPC_COALESCE": "1", "LLAMA_PIN_LAYER_OUT": "1"}  # our patches 0002 and 0003, off unless asked for
    env = {name: value for name, value in os.environ.items() if name not in ours} | (ours if patched else {}) | rpc_tls.environment(tls_key)
    folder = llama_bin()  # MESH_LLAMA_BIN, else the pinned build in the cache
    with on_cores(cores[1] if cores else None):
        worker = subprocess.Popen(
            rpc_server_argv(binaries.binary("ggml-rpc-server", folder), rpc_port, threads=threads, cache=False),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    started = time.monotonic()
    host = None
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", rpc_port)) == 0:
                    break
            time.sleep(0.1)
        argv = llama_server_argv(
            binaries.binary("llama-server", folder),
            path,
            MODEL,
            api_port,
            ctx_size=4096,
            threads=threads,
            device="",
            rpc_endpoints=(f"127.0.0.1:{rpc_port}",),
            worker_layers=sum(layers[1:]),
            tensor_split=layers[1:],
            host_layers=layers[0] if host_gpu else 0,
        )
        if like:
            argv = list(like)
            argv[argv.index("--rpc") + 1] = f"127.0.0.1:{rpc_port}"
            argv[argv.index("--port") + 1] = str(api_port)
        if llama_defaults:
            at = argv.index("--poll")
            del argv[at : at + 2]
        with on_cores(cores[0] if cores else None):
            host = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        base = f"http://127.0.0.1:{api_port}"
        wait_healthy(base, host)
        yield time.monotonic() - started, base
    finally:
        for process in (host, worker):
            if process is not None:
                process.terminate()
                process.wait(10)


def table(rows: dict[str, tuple[float, float, float, tuple[int, ...]]]) -> None:
    print(f"\n| {'setup':<44} | {'load s':>7} | {'MB sent on load':>15} | {'decode tok/s':>12} | blocks |")
    print(f"|{'-' * 46}|{'-' * 9}|{'-' * 17}|{'-' * 14}|--------|")
    for name, (load, sent, rate, layers) in rows.items():
        print(f"| {name:<44} | {load:>7.1f} | {sent / 1e6:>15.2f} | {rate:>12.1f} | {'/'.join(map(str, layers)) or '-':>6} |")


def main() -> int:
    path = model_file()
    print(f"{MODEL}: {path.stat().st_size / 1e9:.2f} GB, {SHAPE.layers} blocks, hidden {SHAPE.hidden}, f16")
    # Each process on every core, as users run it; on this one machine they all share its cores.
    rows = {"alone on one node": alone(path)}
    rows["split, primed (mesh)"] = split(path, prime=True)
    layers = rows["split, primed (mesh)"][3]
    rows["split, not primed (mesh)"] = split(path, prime=False)
    rows["split, primed, no write coalescing (mesh)"] = split(path, prime=True, extra={"MESH_RUNNER_RPC_COALESCE": "false"})
    rows["split, primed, services at normal priority"] = split(path, prime=True, extra={"MESH_NODE_SERVICES_IDLE": "false"})
    # A LAN's MTU: 1452-byte datagrams (loopback allows 16 KiB ones: far fewer packets).
    rows["split, primed, LAN-sized datagrams (mesh)"] = split(path, prime=True, extra={"MESH_GATEWAY_PEER_DATAGRAM_BYTES": "1452"})
    rows["stock llama.cpp RPC, direct TCP"] = stock_rpc(path, layers)
    rows["stock RPC again, default --poll (noise)"] = stock_rpc(path, layers, llama_defaults=True)
    rows["direct TCP with our patches (0002, 0003)"] = stock_rpc(path, layers, patched=True)
    table(rows)
    mesh_rates, stock_rates = [rows["split, primed (mesh)"][2]], [rows["stock llama.cpp RPC, direct TCP"][2]]
    for _ in range(ROUNDS - 1):
        mesh_rates.append(split(path, prime=True)[2])
        stock_rates.append(stock_rpc(path, layers)[2])
    mesh, stock = statistics.median(mesh_rates), statistics.median(stock_rates)
    print(
        f"\n{len(mesh_rates)} alternating rounds, decode tok/s: mesh {', '.join(f'{r:.1f}' for r in mesh_rates)}; "
        f"stock RPC {', '.join(f'{r:.1f}' for r in stock_rates)}"
    )
    primed = rows["split, primed (mesh)"][2]
    # llama.cpp built with OpenMP never reads --poll: this row runs the same program as stock, so
    # stock / this row is the run-to-run noise of single runs on this machine.
    noise = rows["stock llama.cpp RPC, direct TCP"][2] / rows["stock RPC again, default --poll (noise)"][2]
    patched = primed / rows["direct TCP with our patches (0002, 0003)"][2]
    lan = rows["split, primed, LAN-sized datagrams (mesh)"][2] / rows["stock llama.cpp RPC, direct TCP"][2]
    print(
        f"split (mesh, primed) vs stock RPC split: tokens/s ratio {mesh / stock:.3f} (medians {mesh:.1f} / {stock:.1f}); "
        f"single runs: stock vs the same stock again {noise:.3f} (noise), vs direct TCP with our patch {patched:.3f}, "
        f"LAN-sized datagrams vs stock {lan:.3f}"
    )
    pairs = paired(path, layers)
    ratios = sorted(mesh / stock for mesh, stock in pairs)
    quartiles = statistics.quantiles(ratios, n=4)
    print(
        f"paired, both splits up at once, {len(pairs)} request pairs: mesh {statistics.median(m for m, _ in pairs):.1f} vs stock "
        f"{statistics.median(s for _, s in pairs):.1f} tok/s; ratio per pair median {statistics.median(ratios):.3f} "
        f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}, {sum(r >= 1 for r in ratios)} of {len(ratios)} pairs >= 1)"
    )
    # One thread per process leaves a core for the gateways, as separate machines would.
    os.environ["MESH_RUNNER_THREADS"] = "1"
    single = {"1 thread: split, primed (mesh)": split(path, prime=True)}
    single["1 thread: stock llama.cpp RPC, direct TCP"] = stock_rpc(path, single["1 thread: split, primed (mesh)"][3])
    single["1 thread: stock RPC again, default --poll"] = stock_rpc(path, single["1 thread: split, primed (mesh)"][3], llama_defaults=True)
    table(single)
    ratio = single["1 thread: split, primed (mesh)"][2] / single["1 thread: stock llama.cpp RPC, direct TCP"][2]
    noise = single["1 thread: stock llama.cpp RPC, direct TCP"][2] / single["1 thread: stock RPC again, default --poll"][2]
    print(f"\n1 thread per process: split (mesh, primed) vs stock RPC split: tokens/s ratio {ratio:.3f} (stock vs the same stock again: {noise:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

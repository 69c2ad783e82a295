#!/usr/bin/env python3
"""Benchmark: llama.cpp RPC with TLS 1.3 (our patch 0004, a pre-shared key) vs stock RPC in clear text.

The same binaries, the same split (the ~1 GB random-weight dense model of bench/split_pipeline.py,
blocks 5/4, the runner's flags for a split host), direct TCP on loopback, no mesh: only the
transport differs. As in bench/split_cores.py, the host's llama-server runs on PER_NODE cores, the
worker's rpc-server on the next PER_NODE, the client on the rest; both splits are up at once and
PAIRS pairs of requests (one to each, back to back, alternating order) give the ratio TLS / stock.
Rows: upstream's transport (three sends per command); with our patches 0002 and 0003 on in both
splits (coalesced writes, the layer output pinned to the host), as the runner starts a split; and a
control, two stock splits paired the same way, whose spread is the noise of the pairing itself.
Beside decode speed: CPU time of both processes per generated token (llama's OpenMP threads spin
while they wait, so this is mostly spin: it would show a large cost, not a small one), and the time
each split took to load (the worker's weights cross the wire, encrypted in the TLS split).

Each node needs cores of its own: with fewer than 2 x PER_NODE + 2 cores (Linux) the nodes get
what there is (a smoke run; on 2 cores one core each, the client shares them).
Env: BENCH_PER_NODE (6), BENCH_PAIRS (12), BENCH_MODEL (a copy of the model written elsewhere).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import llama_bin, streamed_request, wait_healthy
from bench.split_pipeline import MODEL, model_file, on_cores
from services.common import cpus as cpu_plan
from services.runner import binaries
from services.runner.command import llama_server_argv, rpc_server_argv
from tests.nodes import free_port

PER_NODE = int(os.environ.get("BENCH_PER_NODE", "6"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "12"))
LAYERS = (5, 4)  # blocks on the host, on the worker: as the mesh splits this model over two equal nodes
TLS = {"GGML_RPC_TLS_PSK": os.urandom(32).hex(), "GGML_RPC_TLS_IDENTITY": "bench"}
OURS = ("GGML_RPC_COALESCE", "LLAMA_PIN_LAYER_OUT", "GGML_RPC_TLS_PSK", "GGML_RPC_TLS_IDENTITY")
PATCHED = {"GGML_RPC_COALESCE": "1", "LLAMA_PIN_LAYER_OUT": "1"}
# (row, the environment of both splits' processes, whether the first split has the key)
VARIANTS: list[tuple[str, dict[str, str], bool]] = [
    ("upstream transport", {}, True),
    ("with our patches 0002, 0003 (as the runner starts a split)", PATCHED, True),
    ("control: no key in either split, patches on (the pairs' noise)", PATCHED, False),
]


@dataclass(frozen=True)
class Split:
    """One running split: llama-server's base URL, its process and the rpc-server's, seconds to ready."""

    base: str
    processes: tuple[psutil.Process, psutil.Process]
    load_s: float

    def cpu_seconds(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.processes)


@contextlib.contextmanager
def running(path: Path, env: dict[str, str], cores: tuple[tuple[int, ...], tuple[int, ...]] | None, threads: int, logs: Path) -> Iterator[Split]:
    """A split like bench/split_pipeline.py's running_stock, with `env` for both processes."""
    rpc_port, api_port = free_port(), free_port()
    folder = llama_bin()
    name = "tls" if "GGML_RPC_TLS_PSK" in env else f"stock-{rpc_port}"
    with on_cores(cores[1] if cores else None), (logs / f"{name}-rpc.log").open("ab") as log:
        worker = subprocess.Popen(
            rpc_server_argv(binaries.binary("ggml-rpc-server", folder), rpc_port, threads=threads, cache=False), stdout=log, stderr=log, env=env
        )
    host = None
    started = time.monotonic()
    try:
        # Watched from outside: a probe connection would be a client of its own (a failed handshake).
        while not any(c.laddr.port == rpc_port and c.status == psutil.CONN_LISTEN for c in psutil.Process(worker.pid).net_connections("tcp")):
            if worker.poll() is not None:
                raise RuntimeError(f"rpc-server exited with {worker.returncode}: {(logs / f'{name}-rpc.log').read_text()[-2000:]}")
            time.sleep(0.05)
        argv = llama_server_argv(
            binaries.binary("llama-server", folder),
            path,
            MODEL,
            api_port,
            ctx_size=4096,
            threads=threads,
            device="",
            rpc_endpoints=(f"127.0.0.1:{rpc_port}",),
            worker_layers=sum(LAYERS[1:]),
            tensor_split=LAYERS[1:],
        )
        with on_cores(cores[0] if cores else None), (logs / f"{name}-host.log").open("ab") as log:
            host = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        base = f"http://127.0.0.1:{api_port}"
        wait_healthy(base, host)
        yield Split(base, (psutil.Process(host.pid), psutil.Process(worker.pid)), time.monotonic() - started)
    finally:
        for process in (host, worker):
            if process is not None:
                process.terminate()
                process.wait(10)


def measure(client: httpx.Client, split: Split, prompt: str) -> tuple[float, float]:
    """(decode tokens/s, CPU ms of both processes per generated token) of one streamed request."""
    cpu = split.cpu_seconds()
    _, rate, tokens = streamed_request(client, split.base, prompt, 32, MODEL)
    return rate, (split.cpu_seconds() - cpu) * 1000 / max(tokens, 1)


def compare(
    path: Path,
    extra: dict[str, str],
    keyed: bool,
    cores: tuple[tuple[int, ...], tuple[int, ...]] | None,
    threads: int,
    logs: Path,
    tls_first: bool,
) -> dict[str, list]:
    """The TLS split (`keyed`: with the key; else a second stock one) and the stock one, both with
    `extra`, up at once (`tls_first`: which loads first, with the page cache as the other left it);
    PAIRS paired requests, alternating which goes first."""
    base = {name: value for name, value in os.environ.items() if name not in OURS} | extra
    rows: dict[str, list] = {"tls": [], "stock": [], "load": []}
    with contextlib.ExitStack() as stack:
        started = {}
        for name in ("tls", "stock") if tls_first else ("stock", "tls"):
            started[name] = stack.enter_context(running(path, base | TLS if name == "tls" and keyed else base, cores, threads, logs))
        tls, stock = started["tls"], started["stock"]
        client = stack.enter_context(httpx.Client(timeout=300))
        if keyed:
            rpc_log = (logs / "tls-rpc.log").read_text()
            assert "RPC TLS: TLS 1.3" in rpc_log and "Accepted client connection" in rpc_log, rpc_log[-2000:]
        rows["load"] = [tls.load_s, stock.load_s]
        for split in (tls, stock):
            streamed_request(client, split.base, "Warm up.", 8, MODEL)
        for i in range(PAIRS):
            order = [(tls, rows["tls"]), (stock, rows["stock"])]
            for split, into in order if i % 2 == 0 else order[::-1]:
                into.append(measure(client, split, f"Fact {i} about the sea."))
    return rows


def node_cores() -> tuple[tuple[tuple[int, ...], tuple[int, ...]] | None, str]:
    """(node A's cores, node B's) and a note on what the machine allows; this process moves to the cores left."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return None, f"{len(cpus) or 'unknown'} cores: no pinning"
    per_node = min(PER_NODE, len(cpus) // 2)
    a, b, client = tuple(cpus[:per_node]), tuple(cpus[per_node : 2 * per_node]), tuple(cpus[2 * per_node :])
    if client:
        os.sched_setaffinity(0, client)
    smoke = "" if len(cpus) >= 2 * PER_NODE + 2 else f" (smoke run: {len(cpus)} cores, fewer than {2 * PER_NODE + 2})"
    return (a, b), f"node A cores {a[0]}-{a[-1]}, node B {b[0]}-{b[-1]}, client {f'{client[0]}-{client[-1]}' if client else 'on all'}{smoke}"


def main() -> int:
    path = model_file()
    cores, where = node_cores()
    threads = cpu_plan.math_cores(cores[0]) if cores else cpu_plan.math_cores(cpu_plan.node_cpus())  # as the runner picks
    print(f"{path.name}: {path.stat().st_size / 1e9:.2f} GB, blocks {LAYERS[0]}/{LAYERS[1]}; {where}; {threads} threads; {PAIRS} pairs per row", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="rpc-tls-") as scratch:
        for i, (label, extra, keyed) in enumerate(VARIANTS):
            (Path(scratch) / "tls-rpc.log").unlink(missing_ok=True)
            results[label] = compare(path, extra, keyed, cores, threads, Path(scratch), tls_first=i % 2 == 0)
            tls, stock = results[label]["tls"], results[label]["stock"]
            print(f"  {label}: TLS {statistics.median(r for r, _ in tls):.1f} vs stock {statistics.median(r for r, _ in stock):.1f} tok/s", flush=True)
    print(
        f"\n| {threads} threads a node, blocks 5/4 | TLS tok/s | stock tok/s | ratio, median of pairs | quartiles | min-max | CPU ms/token TLS | stock | load s TLS | stock |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, rows in results.items():
        ratios = [t[0] / s[0] for t, s in zip(rows["tls"], rows["stock"], strict=True)]
        quartiles = statistics.quantiles(ratios, n=4)
        print(
            f"| {label} | {statistics.median(r for r, _ in rows['tls']):.1f} | {statistics.median(r for r, _ in rows['stock']):.1f} | "
            f"{statistics.median(ratios):.3f} | {quartiles[0]:.3f}-{quartiles[2]:.3f} | {min(ratios):.3f}-{max(ratios):.3f} | "
            f"{statistics.median(c for _, c in rows['tls']):.1f} | {statistics.median(c for _, c in rows['stock']):.1f} | "
            f"{rows['load'][0]:.1f} | {rows['load'][1]:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

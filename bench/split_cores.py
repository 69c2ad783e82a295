#!/usr/bin/env python3
"""Benchmark: where a split's time goes when each node has cores of its own, as on two machines.

Like bench/split_pinned.py, node A runs on PER_NODE cores, node B on the next PER_NODE and this
client on the rest. One stock llama.cpp RPC split (PER_NODE threads a node, same blocks) stays up
throughout; each variant of the mesh split is started in turn and PAIRS pairs of requests (one to
the variant, one to stock, back to back, alternating order) give its ratio to stock:

- as shipped; the same split asked directly at its host's llama-server (no gateway HTTP relay);
- the mesh's services (gateway, gossip, placement, runner) moved to the client's cores after start,
  so llama's threads have the node's cores to themselves: what a node whose llama leaves hardware
  threads free gets (SMT siblings, efficiency cores: services/common/cpus.py math_cores);
- the same with libgomp's default spin (GOMP_SPINCOUNT=300000 set by the user wins over the
  split's short spin); libgomp's default spin with the services on the node's cores;
- stock RPC with one core fewer (PER_NODE - 1 threads on PER_NODE - 1 cores): what a core is worth;
- the mesh with TLS in RPC turned off, its RPC through the gateways' QUIC tunnels (as before 0004).

As shipped, both nodes speak TLS 1.3 in RPC, so the host's llama-server reaches the worker's
rpc-server directly (TLS, the split's key) and no Python relays a byte of it.

Needs 2 x PER_NODE + 2 cores (Linux). Env: BENCH_PER_NODE (6), BENCH_PAIRS (8), BENCH_MODEL,
BENCH_VARIANTS (indexes into VARIANTS, e.g. "0,6"; default all).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import streamed_request
from bench.split_pipeline import MODEL, model_file, running_split, running_stock
from services.common import cpus as cpu_plan

PER_NODE = int(os.environ.get("BENCH_PER_NODE", "6"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "8"))
DEFAULT_SPIN = {"GOMP_SPINCOUNT": "300000"}  # libgomp's own default, set explicitly


# (label, the nodes' environment, services moved off the node's cores, also ask the host's llama-server directly)
VARIANTS: list[tuple[str, dict[str, str], bool, bool]] = [
    ("mesh as shipped", {}, False, True),
    ("services on cores of their own", {}, True, False),
    ("services on cores of their own, libgomp's default spin", DEFAULT_SPIN, True, False),
    ("libgomp's default spin, services on the node's cores", DEFAULT_SPIN, False, False),
    ("stock RPC on one core fewer", {}, False, False),
    ("mesh as shipped, again", {}, False, False),
    # Before TLS in RPC (patch 0004): the host's llama-server reached the worker's rpc-server through
    # both gateways' QUIC relay; the same path now when a node cannot speak TLS.
    ("mesh through QUIC tunnels (no TLS in RPC)", {"MESH_RUNNER_RPC_TLS": "false"}, False, False),
]
STOCK_FEWER = "stock RPC on one core fewer"


def mesh_services() -> list[psutil.Process]:
    """Every service process of the nodes this process started (not their llama processes)."""
    found = []
    for node in psutil.Process().children():
        if "services.cli" not in " ".join(node.cmdline()):
            continue
        for child in node.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if "services." in " ".join(child.cmdline()):
                    found.append(child)
    return found


def move(processes: list[psutil.Process], cores: tuple[int, ...]) -> None:
    for process in processes:
        for thread in process.threads():
            with contextlib.suppress(OSError):  # a thread that just ended
                os.sched_setaffinity(thread.id, cores)


@contextlib.contextmanager
def variant(path: Path, label: str, env: dict[str, str], nodes: tuple[tuple[int, ...], ...], client: tuple[int, ...]) -> Iterator[dict[str, str]]:
    """{row name: base URL} of the variant while it runs."""
    a, b = nodes
    if label == STOCK_FEWER:
        with running_stock(path, (5, 4), threads=cpu_plan.math_cores(a[:-1]), cores=(a[:-1], b[:-1])) as (_, base):
            yield {label: base}
        return
    with running_split(path, prime=True, extra=env, cores=(a, b)) as (_, host, layers):
        assert layers == (5, 4), f"blocks {layers}: the stock split would differ"
        yield {label: host.api}


def main() -> int:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2 * PER_NODE + 2:
        print(f"split_cores: needs {2 * PER_NODE + 2} cores (Linux) for two nodes of {PER_NODE} and a client; this machine has {len(cpus)}: skipped")
        return 0
    a, b, client = tuple(cpus[:PER_NODE]), tuple(cpus[PER_NODE : 2 * PER_NODE]), tuple(cpus[2 * PER_NODE :])
    os.sched_setaffinity(0, client)
    path = model_file()
    print(
        f"{path.name}: {path.stat().st_size / 1e9:.2f} GB; node A cores {a[0]}-{a[-1]}, node B {b[0]}-{b[-1]}, client {client[0]}-{client[-1]}; "
        f"{PAIRS} pairs per row",
        flush=True,
    )
    rows: dict[str, tuple[list[float], list[float]]] = {}
    threads = cpu_plan.math_cores(a)  # as the mesh's runner picks
    with running_stock(path, (5, 4), threads=threads, cores=(a, b)) as (_, stock), httpx.Client(timeout=300) as client_http:
        streamed_request(client_http, stock, "Warm up.", 8, MODEL)
        chosen = os.environ.get("BENCH_VARIANTS")
        for label, env, off_node, direct in [VARIANTS[int(i)] for i in chosen.split(",")] if chosen else VARIANTS:
            with variant(path, label, env, (a, b), client) as urls:
                if off_node:
                    move(mesh_services(), client)
                if direct:
                    ports = [int(p.cmdline()[p.cmdline().index("--port") + 1]) for p in psutil.Process().children(recursive=True) if p.name() == "llama-server"]
                    (port,) = [port for port in ports if f"http://127.0.0.1:{port}" != stock]
                    urls[f"{label}, asked at its llama-server (no gateway relay)"] = f"http://127.0.0.1:{port}"
                for url in urls.values():
                    streamed_request(client_http, url, "Warm up.", 8, MODEL)
                for name in urls:
                    rows[name] = ([], [])
                for i in range(PAIRS):
                    for name, url in urls.items():
                        order = [(url, rows[name][0]), (stock, rows[name][1])]
                        for target, into in order if i % 2 == 0 else order[::-1]:
                            into.append(streamed_request(client_http, target, f"Fact {i} about the sea.", 32, MODEL)[1])
                for name in urls:
                    print(f"  {name}: {statistics.median(rows[name][0]):.1f} vs stock {statistics.median(rows[name][1]):.1f} tok/s", flush=True)
    print(f"\n| {PER_NODE} cores per node, blocks 5/4 | tok/s | stock RPC ({threads} threads) tok/s | pairs | ratio, median of pairs | quartiles | min-max |")
    print("|---|---|---|---|---|---|---|")
    for name, (mine, theirs) in rows.items():
        ratios = [m / s for m, s in zip(mine, theirs, strict=False)]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        print(
            f"| {name} | {statistics.median(mine):.1f} | {statistics.median(theirs):.1f} | {len(ratios)} | {statistics.median(ratios):.3f} | "
            f"{q1:.3f}-{q3:.3f} | {min(ratios):.3f}-{max(ratios):.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

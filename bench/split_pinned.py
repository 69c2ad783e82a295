#!/usr/bin/env python3
"""Benchmark: split decode with each node on its own CPU cores, as on two machines.

bench/split_pipeline.py runs every process on this one machine's shared cores; here node A and
node B (all their services, llama-server and rpc-server) run on two disjoint sets of PER_NODE
cores and this client on the cores left, so our Python competes only with its own node's llama
processes, as it would on a user's machine. Needs 2 x PER_NODE + 1 cores (Linux): on a smaller
machine it says so and stops.

Rows, alternated over ROUNDS rounds (decode tokens/s, median of 5 streamed requests each):
- mesh, as shipped: gateway, gossip and placement at idle priority, a split's llama processes on
  all the node's cores with a short OpenMP spin (services/common/cpus.py); QUIC datagrams of
  16 KiB, as loopback allows;
- the same with LAN-sized datagrams (1452 bytes, Ethernet's MTU): what two real machines get;
- stock llama.cpp RPC over direct TCP, same layer split, PER_NODE threads on each node's cores
  (the kernel cuts TCP into packets, so stock pays nothing per packet on a LAN either).
Then BENCH_PAIRS pairs of single requests, mesh and stock splits up at once (split_pipeline.paired).

Env: BENCH_PER_NODE (6), BENCH_ROUNDS (2), BENCH_MODEL (a GGUF written elsewhere; default: the
cached ~1 GB random-weight model of split_pipeline.py).
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.split_pipeline import model_file, paired, split, stock_rpc

PER_NODE = int(os.environ.get("BENCH_PER_NODE", "6"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))


def main() -> int:
    if not hasattr(os, "sched_setaffinity"):
        print("split_pinned: needs CPU affinity (Linux); skipped")
        return 0
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 * PER_NODE + 1:
        print(f"split_pinned: needs {2 * PER_NODE + 1} cores for two nodes of {PER_NODE} and a client; this machine has {len(cpus)}: skipped")
        return 0
    a, b, client = tuple(cpus[:PER_NODE]), tuple(cpus[PER_NODE : 2 * PER_NODE]), cpus[2 * PER_NODE :]
    os.sched_setaffinity(0, client)
    path = model_file()
    print(f"{path.name}: {path.stat().st_size / 1e9:.2f} GB; {len(cpus)} cores: node A {a[0]}-{a[-1]}, node B {b[0]}-{b[-1]}, client {client[0]}-{client[-1]}")
    rows: dict[str, list[float]] = {}
    layers: tuple[int, ...] = ()

    def record(name: str, rate: float) -> None:
        rows.setdefault(name, []).append(rate)
        print(f"  {name}: {rate:.1f} tok/s", flush=True)

    shipped, lan = "mesh as shipped (16 KiB datagrams on loopback)", "mesh, LAN-sized datagrams (1452 B)"
    stock_all = f"stock RPC, {PER_NODE} threads"
    for round_number in range(1, ROUNDS + 1):
        print(f"round {round_number}", flush=True)
        os.environ.pop("MESH_RUNNER_THREADS", None)
        _, _, rate, layers = split(path, prime=True, cores=(a, b))
        record(shipped, rate)
        record(lan, split(path, prime=True, cores=(a, b), extra={"MESH_GATEWAY_PEER_DATAGRAM_BYTES": "1452"})[2])
        record(stock_all, stock_rpc(path, layers, threads=PER_NODE, cores=(a, b))[2])
    print(f"\n| setup ({PER_NODE} cores per node, blocks {'/'.join(map(str, layers))}) | decode tok/s per round | median |")
    print("|---|---|---|")
    medians = {name: statistics.median(rates) for name, rates in rows.items()}
    for name, rates in rows.items():
        print(f"| {name} | {', '.join(f'{r:.1f}' for r in rates)} | {medians[name]:.1f} |")
    pairs = {name: statistics.median(r / s for r, s in zip(rates, rows[stock_all], strict=False)) for name, rates in rows.items()}
    print(
        f"\nmesh vs stock RPC ({PER_NODE} threads): {medians[shipped] / medians[stock_all]:.3f} (medians; paired by round "
        f"{pairs[shipped]:.3f}); LAN-sized datagrams: {medians[lan] / medians[stock_all]:.3f} (paired {pairs[lan]:.3f})"
    )
    # Whole runs on a VM drift from call to call: pair single requests with both splits up at once.
    ratios = [mesh / stock for mesh, stock in paired(path, layers, cores=(a, b), threads=PER_NODE)]
    quartiles = statistics.quantiles(ratios, n=4)
    print(
        f"paired requests, both splits up at once: mesh vs stock RPC {statistics.median(ratios):.3f} "
        f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}, {sum(r >= 1 for r in ratios)} of {len(ratios)} pairs >= 1)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: a random-weight Mixture-of-Experts model (qwen3moe, ~1 GB) and its shards.

Rows: decode tokens/s of the full model on one llama-server vs one shard of a 2-node expert split
(half the experts per layer, the same experts per token), each alone on this machine; and the time
to write a shard, per GB written.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CACHE, cached_model, llama_bin, streamed_request, wait_healthy
from services.common import cpus
from services.common.ports import reserve_tcp_port
from services.placement.moe import plan_shards
from services.runner import binaries
from services.runner.command import llama_server_argv
from services.runner.moe import model_facts, shard_path, write_shard
from tests.synthetic import MoEShape, write_moe

SHAPE = MoEShape(layers=8, experts=32, experts_used=4, hidden=1024, expert_ffn=512, heads=16, kv_heads=4)
MODEL = "MoE-32x-1G"


def model_file() -> Path:
    return cached_model(MODEL, lambda path, tokenizer: write_moe(path, SHAPE, tokenizer))


def decode_rate(model: Path) -> float:
    port = reserve_tcp_port()
    argv = llama_server_argv(
        binaries.binary("llama-server", llama_bin()), model, MODEL, port, ctx_size=2048, threads=cpus.math_cores(cpus.node_cpus()), device=""
    )
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        with httpx.Client(timeout=300) as client:
            streamed_request(client, base, "Warm up.", 8, MODEL)
            return statistics.median(streamed_request(client, base, f"Fact {i} about the sea.", 48, MODEL)[1] for i in range(5))
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    path = model_file()
    facts = model_facts(path, CACHE / "moe", llama_bin())
    plan = plan_shards(facts.ranking.order, SHAPE.experts_used, [("a", SHAPE.experts // 2), ("b", SHAPE.experts // 2)])
    experts = plan.shard("a")
    target = shard_path(CACHE / "moe", path, experts)
    target.unlink(missing_ok=True)
    started = time.monotonic()
    write_shard(path, target, experts)
    took = time.monotonic() - started
    size = target.stat().st_size
    print(
        f"{MODEL}: {path.stat().st_size / 1e9:.2f} GB, {SHAPE.layers} layers, {SHAPE.experts} experts ({SHAPE.experts_used} per token), "
        f"ranking: {facts.ranking.source}"
    )
    full_rate, shard_rate = decode_rate(path), decode_rate(target)
    print(f"\n| {'setup':<40} | {'GB':>5} | {'decode tok/s':>12} |")
    print(f"|{'-' * 42}|{'-' * 7}|{'-' * 14}|")
    print(f"| {'full model, one node':<40} | {path.stat().st_size / 1e9:>5.2f} | {full_rate:>12.1f} |")
    print(f"| {f'one shard of a 2-node split ({len(experts[0])} experts)':<40} | {size / 1e9:>5.2f} | {shard_rate:>12.1f} |")
    print(f"\nshard vs full model: tokens/s ratio {shard_rate / full_rate:.3f}")
    print(f"shard write: {took:.1f} s for {size / 1e9:.2f} GB ({took / (size / 1e9):.1f} s per GB written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`mesh-llm moe check MODEL`: plan an expert split, write its shards, and measure each against the
full model on the calibration text (llama-perplexity's KL divergence and top-1 agreement)."""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from services.cli.flags import UsageError
from services.common.settings import NodeSettings
from services.placement.moe import ShardPlan, minimum_experts, plan_shards
from services.runner import binaries
from services.runner.models import ModelError, resolve
from services.runner.moe import CALIBRATION, moe_info, rank_experts, shard_path, write_shard
from services.runner.settings import RunnerSettings


def run(args: argparse.Namespace) -> int:
    if args.command[1:2] != ["check"] or len(args.command) != 3:
        raise UsageError("usage: mesh-llm moe check MODEL [--nodes N] [--min-agreement PERCENT]")
    try:
        model = resolve(args.command[2], args.models_dir)
    except ModelError as bad:
        raise UsageError(str(bad)) from None
    info = moe_info(model.path)
    if info is None:
        raise UsageError(f"{model.model_id} is not a Mixture-of-Experts model (no expert_count in its header)")
    if args.nodes < 1:
        raise UsageError("--nodes must be at least 1")
    node = NodeSettings()
    home = args.home or node.home
    llama_bin = binaries.folder_of(RunnerSettings().llama_bin, node.cache)
    ranking = rank_experts(model.path, info, home / "moe", llama_bin)
    copies = 2 if args.nodes >= 3 else 1
    per_shard = max(minimum_experts(info.experts, info.experts_used), math.ceil(copies * info.experts / args.nodes))
    plan = plan_shards(ranking.order, info.experts_used, [(f"shard{i + 1}", per_shard) for i in range(args.nodes)])
    if not isinstance(plan, ShardPlan):
        print(f"refused: {plan.reason}")
        return 1
    print(
        f"model: {model.model_id} ({info.arch}, {info.experts} experts, {info.experts_used} per token, {info.layers} layers); expert ranking: {ranking.source}"
    )
    print(
        f"plan: {args.nodes} shard(s), {per_shard} experts per layer each, a core of {plan.core[0]} on every shard, "
        f"every expert on at least {plan.copies} shard(s)"
    )
    perplexity = binaries.binary("llama-perplexity", llama_bin)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "base.kld"
        _perplexity(perplexity, model.path, ["--kl-divergence-base", str(base)])
        for node in plan.nodes:
            experts = plan.shard(node)
            shard = write_shard(model.path, shard_path(home / "moe", model.path, experts), experts)
            text = _perplexity(perplexity, shard, ["--kl-divergence-base", str(base), "--kl-divergence"])
            rows.append(
                (node, len(experts[0]), shard.stat().st_size / 1e6, _number(r"Mean\s+KLD:\s+(-?[\d.]+)", text), _number(r"Same top p:\s+([\d.]+)", text))
            )
    print(f"\n| {'shard':<8} | experts/layer | {'MB':>8} | {'mean KL':>9} | top-1 agreement |")
    print(f"|{'-' * 10}|---------------|{'-' * 10}|{'-' * 11}|-----------------|")
    for node, experts_kept, size, kl, agreement in rows:
        print(f"| {node:<8} | {experts_kept:>13} | {size:>8.1f} | {max(kl, 0.0):>9.4f} | {agreement:>14.1f}% |")
    worst = min(rows, key=lambda row: row[4])
    if worst[4] < args.min_agreement:
        print(f"\nrefused: {worst[0]}'s top-1 agreement {worst[4]:.1f}% is below the {args.min_agreement:g}% required (--min-agreement)")
        return 1
    print(f"\naccepted: every shard agrees with the full model on at least {args.min_agreement:g}% of top-1 tokens")
    return 0


def _perplexity(binary: Path, model: Path, extra: list[str]) -> str:
    done = subprocess.run([str(binary), "-m", str(model), "-f", str(CALIBRATION), "-c", "128", "-t", "2", *extra], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise UsageError(f"llama-perplexity failed on {model.name}: {done.stdout[-300:]}")
    return done.stdout + done.stderr


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        print(text[-2000:], file=sys.stderr)
        raise UsageError("llama-perplexity printed no KL statistics")
    return float(match.group(1))

"""Mixture-of-Experts shards: our random-weight MoE model, expert ranking by llama-imatrix, shard
plans for 2 and 3 nodes, shards that load and generate in llama-server, and `mesh-llm moe check`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from services.common.ports import reserve_tcp_port
from services.placement.moe import ShardPlan, plan_shards
from services.runner import binaries
from services.runner.command import llama_server_argv
from services.runner.models import resolve
from services.runner.moe import moe_info, rank_experts, shard_path, write_shard
from tests.conftest import SMOLLM2
from tests.nodes import MESH_LLM
from tests.synthetic import MoEShape, write_moe

SHAPE = MoEShape(layers=8, experts=16, experts_used=2, hidden=512, expert_ffn=256)
PROMPTS = ["The sea is", "Once upon a time", "def add(a, b):", "Paris is the capital of", "1, 2, 3,"]


@pytest.fixture(scope="module")
def moe_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("moe")
    return write_moe(folder / "MoE-16x.gguf", SHAPE, resolve(SMOLLM2, folder).path)


def greedy(model: Path, llama_bin_dir: Path, prompts: list[str]) -> list[str]:
    """Greedy completions of each prompt by a llama-server on `model` (started, asked, stopped)."""
    port = reserve_tcp_port()
    argv = llama_server_argv(binaries.binary("llama-server", llama_bin_dir), model, model.stem, port, ctx_size=512, threads=2, device="")
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"llama-server exited on {model.name}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        answers = []
        for prompt in prompts:
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/completions",
                timeout=60,
                json={"prompt": prompt, "max_tokens": 12, "temperature": 0, "seed": 1, "cache_prompt": False},
            )
            answers.append(response.json()["choices"][0]["text"])
        return answers
    finally:
        process.terminate()
        process.wait(10)


def test_detection_reads_the_header_only(moe_model: Path) -> None:
    info = moe_info(moe_model)
    assert info is not None and (info.arch, info.experts, info.experts_used, info.layers) == ("qwen3moe", 16, 2, 8)
    assert moe_info(resolve(SMOLLM2, moe_model.parent).path) is None


def test_a_shard_keeping_every_expert_answers_like_the_full_model(moe_model: Path, llama_bin_dir: Path) -> None:
    every = [list(range(SHAPE.experts))] * SHAPE.layers
    shard = write_shard(moe_model, shard_path(moe_model.parent / "shards", moe_model, every), every)
    full = greedy(moe_model, llama_bin_dir, PROMPTS)
    assert greedy(shard, llama_bin_dir, PROMPTS) == full
    assert len(set(full)) > 1 and all(full)


@pytest.mark.parametrize(("nodes", "room", "copies"), [(2, 10, 1), (3, 11, 2)])
def test_expert_splits_cover_every_expert_and_every_shard_serves(moe_model: Path, llama_bin_dir: Path, nodes: int, room: int, copies: int) -> None:
    ranking = rank_experts(moe_model, moe_info(moe_model), moe_model.parent / "cache", llama_bin_dir)
    assert ranking.source == "imatrix"
    assert len(set(ranking.order)) > 1  # layers rank their experts differently
    plan = plan_shards(ranking.order, SHAPE.experts_used, [(f"n{i}", room) for i in range(nodes)])
    assert isinstance(plan, ShardPlan) and plan.copies == copies
    for layer, order in enumerate(ranking.order):
        held = [e for shard in plan.experts for e in shard[layer]]
        assert all(held.count(e) >= copies for e in range(SHAPE.experts)), f"layer {layer}"
        for shard in plan.experts:
            assert set(order[: plan.core[layer]]) <= set(shard[layer])  # that layer's most used experts
    assert len({shard[layer] for shard in plan.experts for layer in range(SHAPE.layers)}) > nodes  # lists differ per layer
    for node in plan.nodes:
        experts = plan.shard(node)
        shard = write_shard(moe_model, shard_path(moe_model.parent / "shards", moe_model, experts), experts)
        info = moe_info(shard)
        assert info is not None and info.experts == room and info.experts_used == SHAPE.experts_used
        assert all(answer for answer in greedy(shard, llama_bin_dir, PROMPTS[:2]))


def test_moe_check_measures_each_shard_against_the_full_model(moe_model: Path, llama_bin_dir: Path, tmp_path: Path) -> None:
    def check(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(MESH_LLM), "moe", "check", str(moe_model), "--home", str(tmp_path), *args], capture_output=True, text=True, timeout=600)

    whole = check("--nodes", "1", "--min-agreement", "99.9")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    (row,) = [line for line in whole.stdout.splitlines() if line.startswith("| shard1")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "16" and float(cells[3]) < 1e-4 and cells[4] == "100.0%"
    split = check("--nodes", "2", "--min-agreement", "99.9")
    print(split.stdout)
    assert split.returncode == 1 and "refused: shard" in split.stdout
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in split.stdout.splitlines()
        if line.startswith("| shard") and "experts/layer" not in line
    ]
    assert len(rows) == 2 and all(float(r[3]) > 0 and 0 <= float(r[4].rstrip("%")) < 100 for r in rows)
    bad = subprocess.run([str(MESH_LLM), "moe", "check", SMOLLM2], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not a Mixture-of-Experts model" in bad.stderr and "Traceback" not in bad.stderr


def test_without_imatrix_the_ranking_falls_back_to_router_norms_marked_as_such(moe_model: Path, tmp_path: Path) -> None:
    ranking = rank_experts(moe_model, moe_info(moe_model), tmp_path / "cache", llama_bin=tmp_path / "no-llama-here")
    assert ranking.source == "router-norm heuristic"
    assert len(ranking.order) == SHAPE.layers and all(sorted(layer) == list(range(SHAPE.experts)) for layer in ranking.order)
    cached = rank_experts(moe_model, moe_info(moe_model), tmp_path / "cache", tmp_path / "no-llama-here")  # cached per model file: not recomputed
    assert cached == ranking

"""A Mixture-of-Experts model too big for each node, split by experts over 2 and 3 nodes: every
expert somewhere, every shard serving, and no traffic between nodes but the HTTP tunnel's."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.placement.memory import memory_needed
from services.placement.settings import PlacementSettings
from services.runner.models import resolve
from services.runner.moe import model_facts
from tests.conftest import SMOLLM2
from tests.synthetic import MoEShape, write_moe

pytestmark = pytest.mark.e2e
SHAPE = MoEShape(layers=8, experts=16, experts_used=2, hidden=512, expert_ffn=256)
MODEL = "MoE-16x"


@pytest.fixture(scope="module")
def moe_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("moe-mesh")
    return write_moe(folder / f"{MODEL}.gguf", SHAPE, resolve(SMOLLM2, folder).path)


def max_vram_for(model: Path, experts: int, llama_bin: Path) -> str:
    """--max-vram (GB) with room for the trunk plus `experts` experts per layer, not the whole model."""
    settings = PlacementSettings()
    facts = model_facts(model, model.parent / "cache", llama_bin)
    need = (facts.trunk_bytes + experts * facts.expert_bytes * facts.layers) * (1 + settings.headroom) + settings.context_bytes
    assert need < memory_needed(facts.size_bytes, settings.headroom, settings.context_bytes)
    return f"{(need + 1e6) / 1e9:.4f}"


def shard_assignment(node) -> dict | None:
    try:
        (assignment,) = node.status()["assignments"]
        state = node.model_state(MODEL)
    except (httpx.HTTPError, ValueError):
        return None
    return assignment if assignment["mode"] == "moe-shard" and state and state["state"] == "ready" else None


def settled(nodes, count: int, seen: list[dict]) -> bool:
    """True when every node serves its shard of one `count`-node plan, and did on the previous call
    too (2 s before): while the last node joins, the others are still ready with the smaller plan
    for a moment after the planner has moved on. The plan is appended to `seen`."""
    assignments = [shard_assignment(node) for node in nodes]
    plan = next((a for a in assignments if a and len(a["shards"]) == count), None)
    if plan is None or not all(assignments):
        seen.clear()
        return False
    planned = dict(_shards(plan))
    if any(planned.get(node_id) != layers for a in assignments for node_id, layers in _shards(a)):
        seen.clear()
        return False
    if seen and seen[-1] == plan:
        return True
    seen.append(plan)
    time.sleep(2)
    return False


def peer_bytes(node) -> dict[str, float]:
    text = httpx.get(f"{node.console_url}/metrics", timeout=10).text
    return {
        s.labels["stream"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "mesh_peer_bytes_total" and s.labels["direction"] == "sent"
    }


@pytest.mark.parametrize(("count", "room", "copies"), [(2, 10, 1), (3, 11, 2)])
def test_an_moe_model_split_by_experts_serves_from_every_shard_without_rpc(
    mesh_bed, llama_bin_dir: Path, moe_model: Path, count: int, room: int, copies: int
) -> None:
    vram = max_vram_for(moe_model, room, llama_bin_dir)
    first = mesh_bed.start("N0", "--model", str(moe_model), "--max-vram", vram)
    nodes = [first] + [mesh_bed.start(f"N{i}", "--model", str(moe_model), "--max-vram", vram, join=first) for i in range(1, count)]
    seen: list[dict] = []
    mesh_bed.wait_until(lambda: settled(nodes, count, seen), 240, "every shard of one plan serving")
    plan = seen[-1]
    shards = dict(_shards(plan))
    assert len(shards) == count
    for layer in range(SHAPE.layers):
        held = [e for layers in shards.values() for e in layers[layer]]
        assert all(held.count(e) >= copies for e in range(SHAPE.experts)), f"layer {layer}"
    assert all(len(layers[0]) == room for layers in shards.values())
    print(plan["reason"])
    # The entry node must know every shard is ready (gossip, a probe interval or so) before spreading.
    mesh_bed.wait_until(
        lambda: sum(1 for p in first.status()["peers"] for m in p["models"] if m["model_id"] == MODEL and m["state"] == "ready") == count - 1,
        30,
        "N0 sees every shard ready",
    )
    # Sessions spread over the shards (by `user`); every answer comes from a whole model on one node.
    served_by = set()
    for i in range(20):
        response = httpx.post(
            f"{first.api}/v1/chat/completions",
            timeout=60,
            json={"model": MODEL, "user": f"user-{i}", "max_tokens": 8, "messages": [{"role": "user", "content": f"Tell me about {i}."}]},
        )
        assert response.status_code == 200, response.text
        served_by.add(response.headers["x-mesh-node"])
    assert len(served_by) == count
    for node in nodes:
        sent = peer_bytes(node)
        assert sent.get("rpc", 0) == 0 and sent.get("http", 0) + sent.get("gossip", 0) > 0, sent
    assert peer_bytes(first).get("http", 0) > 0  # N0 forwarded sessions to the other shards


def _shards(assignment: dict) -> list:
    return [(node, layers) for node, layers in assignment["shards"]]

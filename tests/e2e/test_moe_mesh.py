"""A Mixture-of-Experts model too big for each node, split by experts over 2 and 3 nodes: every
expert somewhere, every shard serving, and no traffic between nodes but the HTTP tunnel's."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.placement.planner import memory_needed
from services.placement.settings import PlacementSettings
from services.runner.models import resolve
from services.runner.moe import model_facts
from services.runner.synthetic import MoEShape, write_moe
from tests.conftest import SMOLLM2

pytestmark = pytest.mark.e2e
SHAPE = MoEShape(layers=8, experts=16, experts_used=2, hidden=512, expert_ffn=256)
MODEL = "MoE-16x"


@pytest.fixture(scope="module")
def moe_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("moe-mesh")
    return write_moe(folder / f"{MODEL}.gguf", SHAPE, resolve(SMOLLM2, folder).path)


def max_vram_for(model: Path, experts: int) -> str:
    """--max-vram (GB) with room for the trunk plus `experts` experts per layer, not the whole model."""
    settings = PlacementSettings()
    facts = model_facts(model, model.parent / "cache")
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


def peer_bytes(node) -> dict[str, float]:
    text = httpx.get(f"{node.console_url}/metrics", timeout=10).text
    return {s.labels["stream"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "mesh_peer_bytes_total" and s.labels["direction"] == "sent"}


@pytest.mark.parametrize(("count", "room", "copies"), [(2, 10, 1), (3, 11, 2)])
def test_an_moe_model_split_by_experts_serves_from_every_shard_without_rpc(mesh_bed, moe_model: Path, count: int, room: int, copies: int) -> None:
    vram = max_vram_for(moe_model, room)
    first = mesh_bed.start("N0", "--model", str(moe_model), "--max-vram", vram)
    nodes = [first] + [mesh_bed.start(f"N{i}", "--model", str(moe_model), "--max-vram", vram, join=first) for i in range(1, count)]
    mesh_bed.wait_until(lambda: all(shard_assignment(n) for n in nodes), 240, "every shard serving")
    planner = next(n for n in nodes if shard_assignment(n)["shards"] and len(shard_assignment(n)["shards"]) == count)
    shards = dict(_shards(shard_assignment(planner)))
    assert len(shards) == count
    for layer in range(SHAPE.layers):
        held = [e for layers in shards.values() for e in layers[layer]]
        assert all(held.count(e) >= copies for e in range(SHAPE.experts)), f"layer {layer}"
    assert all(len(layers[0]) == room for layers in shards.values())
    print(shard_assignment(planner)["reason"])
    # The entry node must know every shard is ready (gossip, a probe interval or so) before spreading.
    mesh_bed.wait_until(lambda: sum(1 for p in first.status()["peers"] for m in p["models"]
                                    if m["model_id"] == MODEL and m["state"] == "ready") == count - 1, 30, "N0 sees every shard ready")
    # Sessions spread over the shards (by `user`); every answer comes from a whole model on one node.
    served_by = set()
    for i in range(20):
        response = httpx.post(f"{first.api}/v1/chat/completions", timeout=60, json={
            "model": MODEL, "user": f"user-{i}", "max_tokens": 8, "messages": [{"role": "user", "content": f"Tell me about {i}."}]})
        assert response.status_code == 200, response.text
        served_by.add(response.headers["x-mesh-node"])
    assert len(served_by) == count
    for node in nodes:
        sent = peer_bytes(node)
        assert sent.get("rpc", 0) == 0 and sent.get("http", 0) + sent.get("gossip", 0) > 0, sent
    assert peer_bytes(first).get("http", 0) > 0  # N0 forwarded sessions to the other shards


def _shards(assignment: dict) -> list:
    return [(node, layers) for node, layers in assignment["shards"]]

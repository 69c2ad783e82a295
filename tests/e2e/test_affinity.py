"""A conversation stays on one node for all its turns (KV-cache reuse), even when it enters the
mesh at a node that serves nothing and two nodes serve its model."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.gateway.openai.chat.schemas import ChatCompletionRequest
from services.gateway.routing import _rendezvous
from tests.conftest import SMOLLM2

pytestmark = pytest.mark.e2e


def http_bytes_sent(node) -> float:
    """Bytes this node's gateway has sent back through HTTP tunnels: it grows only on the node that serves."""
    for family in text_string_to_metric_families(httpx.get(f"{node.console_url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "mesh_peer_bytes_total" and sample.labels == {"direction": "sent", "stream": "http"}:
                return sample.value
    return 0.0


def test_a_three_turn_conversation_stays_on_one_node(mesh_bed) -> None:
    a = mesh_bed.start("A", "--model", SMOLLM2)
    b = mesh_bed.start("B", "--model", SMOLLM2, join=a)
    c = mesh_bed.start("C", "--client", join=a)
    a.wait_ready(SMOLLM2)
    b.wait_ready(SMOLLM2)
    ids = {a.status()["id"]: "A", b.status()["id"]: "B"}

    def ready_servers_seen_by_c() -> int:
        peers = c.status()["peers"]
        return sum(1 for p in peers for m in p["models"] if m["model_id"] == SMOLLM2 and m["kind"] == "llama-server" and m["state"] == "ready")

    mesh_bed.wait_until(lambda: ready_servers_seen_by_c() == 2, 60, "C sees both servers ready")
    # Two conversations that hash to A and two that hash to B: each must stay on its node for all three
    # turns, and between them they use both nodes (a router that ignored the key would not).
    openings = pick_openings(ids, per_node=2)
    served_by: dict[str, set[str]] = {}
    for opening in openings:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": opening}]
        for follow_up in ("Another one?", "And one more?", None):
            before = {name: http_bytes_sent(node) for name, node in (("A", a), ("B", b))}
            reply = httpx.post(f"{c.api}/v1/chat/completions", timeout=120, json={"model": SMOLLM2, "messages": messages, "max_tokens": 8, "temperature": 0})
            assert reply.status_code == 200, reply.text
            after = {name: http_bytes_sent(node) for name, node in (("A", a), ("B", b))}
            grew = {name for name in before if after[name] > before[name]}
            assert len(grew) == 1, (before, after)
            assert {ids[reply.headers["x-mesh-node"]]} == grew  # the entry's choice is the node whose counters moved
            served_by.setdefault(opening, set()).update(grew)
            messages = [*messages, {"role": "assistant", "content": reply.json()["choices"][0]["message"]["content"]}]
            if follow_up:
                messages.append({"role": "user", "content": follow_up})
    assert served_by == {opening: {expected} for opening, expected in openings.items()}


SYSTEM = "Answer in one short line."


def pick_openings(ids: dict[str, str], per_node: int) -> dict[str, str]:
    """Openings whose conversations the router should send to each node: {opening: node name}."""
    chosen: dict[str, str] = {}
    for topic in ("colours", "birds", "rivers", "trees", "cities", "stars", "fruits", "tools", "games", "songs", "seas", "hills"):
        opening = f"Name three {topic}."
        key = ChatCompletionRequest(model=SMOLLM2, messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": opening}]).affinity()
        home = ids[max(ids, key=lambda node_id: _rendezvous(key, node_id))]
        if sum(1 for node in chosen.values() if node == home) < per_node:
            chosen[opening] = home
    assert sorted(chosen.values()) == sorted(name for name in ids.values() for _ in range(per_node)), chosen
    return chosen

"""A conversation stays on one node for all its turns (KV-cache reuse), even when it enters the
mesh at a node that serves nothing and two nodes serve its model."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

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
    served_by: dict[str, set[str]] = {}
    for opening in ("Name three colours.", "Name three birds.", "Name three rivers.", "Name three trees.", "Name three cities."):
        messages = [{"role": "system", "content": "Answer in one short line."}, {"role": "user", "content": opening}]
        for follow_up in ("Another one?", "And one more?", None):
            before = {name: http_bytes_sent(node) for name, node in (("A", a), ("B", b))}
            reply = httpx.post(f"{c.api}/v1/chat/completions", timeout=120,
                               json={"model": SMOLLM2, "messages": messages, "max_tokens": 8, "temperature": 0})
            assert reply.status_code == 200, reply.text
            after = {name: http_bytes_sent(node) for name, node in (("A", a), ("B", b))}
            grew = {name for name in before if after[name] > before[name]}
            assert len(grew) == 1, (before, after)
            assert {ids[reply.headers["x-mesh-node"]]} == grew  # the entry's choice is the node whose counters moved
            served_by.setdefault(opening, set()).update(grew)
            messages = [*messages, {"role": "assistant", "content": reply.json()["choices"][0]["message"]["content"]}]
            if follow_up:
                messages.append({"role": "user", "content": follow_up})
    assert all(len(nodes) == 1 for nodes in served_by.values()), served_by

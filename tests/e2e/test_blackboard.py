"""The blackboard on real nodes (no model) on 127.0.0.x: a post spreads to every member within the
test profile's bound, a node stopped meanwhile catches up when it is back, the SQLite store keeps
every post through kill -9; the size and rate limits on the API; the scrubber on each path (API
422, CLI warning) and a peer's hand-built frame with unscrubbed, expired, oversized or too many
posts dropped on receipt and counted."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

import grpc
import httpx
import pytest

from services.common.scrubber import NAMES, Kind
from services.gossip.blackboard.posts import new_post
from services.gossip.blackboard.sync import post_to_proto
from services.gossip.settings import TEST
from tests.nodes import MESH_LLM_ARGV, NodeProcess
from tests.unit.test_scrubber import CAUGHT

pytestmark = pytest.mark.e2e
ABC = ["A", "B", "C"]


def cli(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MESH_LLM_ARGV, "blackboard", *args, "--home", str(node.home)], capture_output=True, text=True, timeout=60)


def feed(node: NodeProcess, **params: object) -> list[dict]:
    """The node's feed through its console (every node has one; the API only nodes that joined or serve)."""
    node.check_alive()
    try:
        response = httpx.get(f"{node.console_url}/v1/blackboard/posts", params={"limit": 500, **params}, timeout=5)
    except httpx.HTTPError:
        return []
    return response.json()["data"] if response.status_code == 200 else []


def texts(node: NodeProcess) -> set[str]:
    return {post["text"] for post in feed(node)}


def ids(node: NodeProcess) -> set[str]:
    return {post["id"] for post in feed(node)}


def post_api(node: NodeProcess, text: str, **extra: object) -> httpx.Response:
    return httpx.post(f"{node.console_url}/v1/blackboard/posts", json={"text": text, **extra}, timeout=10)


def test_posts_spread_catch_up_and_survive_kill_9(mesh_bed) -> None:
    a = mesh_bed.start("A")
    b = mesh_bed.start("B", join=a)
    mesh_bed.start("C", join=a)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(ABC), 60, "a mesh of three")

    posted = cli(a, "post", "STATUS: A is up", "--tag", "status")
    assert posted.returncode == 0, posted.stderr
    mesh_bed.wait_until(lambda: all("STATUS: A is up" in texts(mesh_bed.nodes[n]) for n in ABC), TEST.board_within, "A's post on every node")
    # Posted on B's API: on A and C within the bound too.
    assert httpx.post(f"{b.api}/v1/blackboard/posts", json={"text": "FINDING: B answers"}, timeout=10).status_code == 200
    mesh_bed.wait_until(lambda: all("FINDING: B answers" in texts(mesh_bed.nodes[n]) for n in ABC), TEST.board_within, "B's post on every node")

    # C away for a while; what A and B post meanwhile is on C once it is back.
    assert mesh_bed.nodes["C"].interrupt() == 0
    meanwhile = {f"STATUS: while C was away {i}" for i in range(4)}
    for i, text in enumerate(sorted(meanwhile)):
        assert post_api(a if i % 2 else b, text).status_code == 200
    c = mesh_bed.start("C", join=a)  # the same home, so the same node and the same store
    mesh_bed.wait_until(lambda: meanwhile | {"STATUS: A is up", "FINDING: B answers"} <= texts(c), 60, "C caught up")

    # kill -9: every post is in B's file and in its feed when it starts again, alone.
    everything = ids(a)
    assert len(everything) == 6
    mesh_bed.wait_until(lambda: ids(b) == everything, TEST.board_within, "every post on B")
    b.kill()
    with sqlite3.connect(b.home / "blackboard.sqlite3") as db:
        assert {row[0] for row in db.execute("SELECT id FROM posts")} == everything
    again = mesh_bed.start("B")
    mesh_bed.wait_until(lambda: ids(again) == everything, 60, "B's posts after kill -9 and a restart")
    assert [p["tags"] for p in feed(again, **{"from": "A"}) if p["text"] == "STATUS: A is up"] == [["status"]]


def test_limits_and_the_scrubber_on_each_path(mesh_bed) -> None:
    a = mesh_bed.start("A")
    b = mesh_bed.start("B", join=a)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(["A", "B"]), 60, "a mesh of two")

    # Size: over 4 KB refused. The rate: 10 posts a minute, then 429 on the API and one line from the CLI
    # (A's posts, made at once: the 10 in the window are these).
    oversized = post_api(a, "x" * 4097)
    assert oversized.status_code == 400 and "4096 bytes" in oversized.json()["error"]["message"]
    answers = [post_api(a, f"STATUS: step {i}").status_code for i in range(11)]
    assert answers == [200] * 10 + [429]
    limited = cli(a, "post", "STATUS: one more")
    assert limited.returncode == 2 and "at most 10 times in 60 s" in limited.stderr and len(limited.stderr.splitlines()) == 1

    # The HTTP API (B joined a mesh, so its API is on): each flagged class is a 422 naming it.
    for text, kind, scrubbed in CAUGHT:
        response = httpx.post(f"{b.api}/v1/blackboard/posts", json={"text": text}, timeout=10)
        if kind == Kind.HOME_PATH:
            assert response.status_code == 200 and response.json()["text"] == scrubbed, response.text
        else:
            assert response.status_code == 422 and NAMES[kind] in response.json()["error"]["message"], (text, response.text)
    # The CLI: warns, shows the scrubbed text and posts it (a case of each class).
    for text, kind, scrubbed in {case[1]: case for case in reversed(CAUGHT)}.values():
        result = cli(b, "post", text)
        assert result.returncode == 0 and "warning" in result.stderr and NAMES[kind] in result.stderr, result.stderr
        assert "\n".join(f"    {line}" for line in scrubbed.splitlines()) in result.stderr
    mesh_bed.wait_until(lambda: ids(a) == ids(b) and len(ids(a)) == 19, TEST.board_within, "every post on both nodes")
    for text, _, _ in CAUGHT:
        assert all(text not in seen for seen in texts(a) | texts(b))

    # A peer's frame, hand-built as the gateway would deliver it to gossip: only the clean post is kept.
    now = time.time()
    clean = new_post("mallory-id", "mallory", now, "TIP: a clean post in the same frame")
    dirty = [new_post("mallory-id", "mallory", now - 1, text) for text, _, _ in CAUGHT]
    expired = new_post("mallory-id", "mallory", now - 49 * 3600, "STATUS: old news")
    oversized_post = new_post("mallory-id", "mallory", now - 2, "y" * 5000)
    flood = [new_post("flooder-id", "flooder", now - 30 + i, f"STATUS: flood {i}") for i in range(12)]
    frame = peer_frame([clean, *dirty, expired, oversized_post, *flood])
    before = dropped(a)
    node = json.loads((a.home / "node.json").read_text())
    with grpc.insecure_channel(f"127.0.0.1:{node['grpc_ports']['gossip']}") as channel:
        handle = channel.unary_unary("/mesh.v1.Gossip/HandlePeerMessage", request_serializer=None, response_deserializer=None)
        handle(frame, timeout=10)
    kept = texts(a)
    assert clean.text in kept and sum(1 for t in kept if t.startswith("STATUS: flood")) == 10
    assert not {p.text for p in [*dirty, expired, oversized_post]} & kept
    after = dropped(a)
    assert {reason: after.get(reason, 0) - before.get(reason, 0) for reason in ("flagged", "expired", "too_large", "rate")} == {
        "flagged": len(dirty),
        "expired": 1,
        "too_large": 1,
        "rate": 2,
    }
    mesh_bed.wait_until(lambda: clean.text in texts(b), TEST.board_within, "the clean post passed on to B")


def peer_frame(posts: list) -> bytes:
    """A gossip PeerMessage carrying a GossipMessage(board_posts=...) from a made-up peer."""
    from services.proto.mesh.v1 import gossip_pb2, peer_pb2

    message = peer_pb2.GossipMessage(board_posts=peer_pb2.BoardPosts(posts=[post_to_proto(p) for p in posts]))
    return gossip_pb2.PeerMessage(payload=message.SerializeToString(), peer_node_id="mallory-id").SerializeToString()


def dropped(node: NodeProcess) -> dict[str, float]:
    """mesh_gossip_board_dropped_total by reason, from the node's gossip metrics."""
    text = httpx.get(node.status()["metrics"]["gossip"], timeout=5).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("mesh_gossip_board_dropped_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts

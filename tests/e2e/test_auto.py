"""`mesh-llm --auto` against a real Nostr relay (nostr-relay, started on loopback by the test):
with two meshes listed, a client joins the better one (the one serving a model), answers a chat
through it, and started again scores that mesh +500. With only bad listings on a relay that
checks nothing (malformed, mismatched, forged, expired, full), each of them naming a live mesh
with a working token so that any one believed would be joined, --auto ignores them, counts each
by its reason (the forged as unsigned, the expired as expired: the relay hands them over and our
reader refuses them), and starts a mesh of its own serving SmolLM2, the catalog model that fits
its --max-vram.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import websockets
from nostr_sdk import EventBuilder, Keys, Kind, Tag, Timestamp

from services.common import credentials, mesh_identity
from services.common.invite import decode
from services.common.records import JoinState
from services.gateway.discovery.listing import KIND, Listing, content_of, tags_of
from services.gateway.discovery.nostr import event_of
from tests.conftest import SMOLLM2
from tests.e2e import test_publish
from tests.e2e.test_publish import PUBLISH_FAST, running_relay, wait_for_event

pytestmark = pytest.mark.e2e

relay_url = test_publish.relay_url  # the fixture, shared rather than copied

HELLO = [{"role": "user", "content": "Say hello."}]


def wait_for(predicate, timeout: float, what: str, *nodes) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes:
            node.check_alive()
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not {what} after {timeout}s:\n" + "\n".join(node.log_tail() for node in nodes))


def status_of(node) -> dict:
    try:
        return node.status()
    except (httpx.HTTPError, ValueError):
        return {}


def chat_answers(node) -> bool:
    try:
        reply = httpx.post(f"{node.api}/v1/chat/completions", json={"model": SMOLLM2, "messages": HELLO, "max_tokens": 8}, timeout=60)
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and bool(reply.json()["choices"][0]["message"]["content"])


def test_auto_joins_the_better_of_two_listed_meshes(mesh_bed, relay_url: str) -> None:
    strong = mesh_bed.start("strong", "--model", SMOLLM2, "--publish", "--mesh-name", "strong", "--relay", relay_url, env=PUBLISH_FAST)
    strong.wait_ready(SMOLLM2)
    weak = mesh_bed.start("weak", "--publish", "--mesh-name", "weak", "--relay", relay_url, env=PUBLISH_FAST)
    wait_for(lambda: mesh_identity.load(weak.home) is not None, 30, "weak's mesh made", weak)
    strong_mesh, weak_mesh = mesh_identity.load(strong.home), mesh_identity.load(weak.home)
    assert strong_mesh is not None and weak_mesh is not None and strong_mesh.mesh_id != weak_mesh.mesh_id
    # Both listed and joinable: strong serves a model (+10), weak serves none.
    wait_for_event(relay_url, strong, strong_mesh.mesh_id, lambda listing: SMOLLM2 in listing.served and bool(listing.join_token), 60)
    wait_for_event(relay_url, weak, weak_mesh.mesh_id, lambda listing: bool(listing.join_token), 60)

    client = mesh_bed.start("client", "--client", "--auto", "--relay", relay_url, "--join-timeout", "30")
    wait_for(lambda: status_of(client).get("join_state") == JoinState.JOINED, 90, "joined", client)
    assert status_of(client)["mesh_id"] == strong_mesh.mesh_id
    log = client.log_path.read_text(errors="replace")
    assert f"--auto joins mesh strong ({strong_mesh.mesh_id}), score 115" in log, log
    assert f"  105  {weak_mesh.mesh_id} weak" in log, log
    stored = mesh_identity.load(client.home)
    assert stored is not None and not stored.member  # joined with the public credential, never given the secret
    wait_for(lambda: chat_answers(client), 90, "a chat answered through the client", client, strong)

    # Started again, the mesh it joined last time has +500.
    client.interrupt()
    again = mesh_bed.start("again", "--client", "--auto", "--relay", relay_url, "--home", str(client.home), "--join-timeout", "30")
    wait_for(lambda: status_of(again).get("join_state") == JoinState.JOINED, 90, "joined again", again)
    assert "last joined +500" in again.log_path.read_text(errors="replace")


def publish_raw(relay: str, events: list[str]) -> None:
    """Send event JSON as it is, unchecked by any client library, and wait for the relay's OKs."""

    async def send() -> None:
        async with websockets.connect(relay) as socket:
            for text in events:
                await socket.send(json.dumps(["EVENT", json.loads(text)]))
                answer = json.loads(await asyncio.wait_for(socket.recv(), 10))
                assert answer[0] == "OK" and answer[2] is True, answer

    asyncio.run(send())


def signed(content: str, tags: list[list[str]], created_at: int, keys: Keys) -> str:
    """An event signed as it is: whatever the content says, the signature holds."""
    builder = EventBuilder(Kind(KIND), content).tags([Tag.parse(tag) for tag in tags]).custom_created_at(Timestamp.from_secs(created_at))
    return keys.sign_event(builder.finalize_unsigned(keys.public_key())).as_json()


def bad_listings(target: Listing) -> list[str]:
    """Five listings that would each win (ten nodes, a model, a working token to `target`'s mesh)
    were they believed: malformed, mismatched, forged, expired, full."""
    now = int(time.time())
    keys = Keys.generate()
    good = replace(target, node_count=10, created_at=now - 5, expires_at=now + 115)
    malformed = signed(content_of(good).replace('"nodes":10', '"nodes":"ten"'), tags_of(good), good.created_at, keys)
    mismatched = signed(content_of(good), tags_of(replace(good, mesh_id="another-mesh")), good.created_at, keys)
    forged = json.loads(event_of(good, Keys.generate()).as_json())  # signed, then its node count raised: the signature no longer holds
    forged["content"] = forged["content"].replace('"nodes":10', '"nodes":11')
    expired = event_of(replace(good, created_at=now - 300, expires_at=now - 180), Keys.generate()).as_json()
    # The oldest of those naming the mesh, so that a forged or expired one believed would be its newest listing, not delisted with it.
    full = event_of(replace(good, client_count=5, max_clients=5, created_at=now - 20, expires_at=now + 100), Keys.generate()).as_json()
    return [malformed, mismatched, json.dumps(forged), expired, full]


def test_auto_ignores_bad_listings_and_starts_a_mesh_of_its_own(mesh_bed, tmp_path: Path) -> None:
    # A live mesh whose public token the bad listings carry: were one believed, --auto would join it.
    bait = mesh_bed.start("bait")
    bait_address = decode(bait.token()).bootstrap[0]  # printed once its mesh is stored
    bait_mesh = mesh_identity.load(bait.home)
    assert bait_mesh is not None
    token = credentials.current_public_token(bait_mesh.mesh_id, bait_mesh.secret, (), [bait_address])
    target = Listing(bait_mesh.mesh_id, "bait", "", (SMOLLM2,), (), 10**9, 1, 0, 0, "0.1.0", token, False, "", 0, 0)
    (tmp_path / "relay").mkdir()
    with running_relay(tmp_path / "relay", careless=True) as relay:
        publish_raw(relay, bad_listings(target))
        own = mesh_bed.start("own", "--auto", "--relay", relay, "--max-vram", "0.5")
        own.wait_ready(SMOLLM2, timeout=180)
        log = own.log_path.read_text(errors="replace")
        assert "--auto ignored 5 listings: 1 expired, 1 full, 1 malformed, 1 mismatched, 1 unsigned" in log, log
        assert f"with {SMOLLM2}, the largest catalog model that fits 0.50 GB" in log, log
        mine = mesh_identity.load(own.home)
        assert mine is not None and mine.member and mine.mesh_id != bait_mesh.mesh_id
        assert status_of(own)["mesh_id"] == mine.mesh_id
        assert chat_answers(own)

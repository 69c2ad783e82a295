"""Public meshes on Nostr, against a real relay (the nostr-relay package) this test starts on
loopback: a node started with --publish puts a signed listing there that never holds the mesh
secret; `mesh-llm discover` shows it; a member started without --publish takes over publishing
when the publisher dies; and a listing expires 120 s after its publisher stopped, read as of a
later clock instead of waited for.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from nostr_sdk import Event, Keys, ReqTarget

from services.common import credentials, mesh_identity
from services.common.invite import decode
from services.gateway.discovery.listing import Listing, Rejection, read
from services.gateway.discovery.nostr import KEY_FILE, Directory, client_for, listing_filter, read_directory, untrusted
from tests.conftest import SMOLLM2
from tests.nodes import MESH_LLM_ARGV, NodeProcess, free_port

pytestmark = pytest.mark.e2e

NOSTR_RELAY = Path(sys.executable).parent / "nostr-relay"
PUBLISH_FAST = {"MESH_GATEWAY_PUBLISH_INTERVAL": "1"}  # every second instead of every minute; lifetime stays 120 s
LIFETIME = 120


@pytest.fixture
def relay_url(tmp_path: Path) -> Iterator[str]:
    """A nostr-relay serving on a loopback port of its own, its database in tmp_path."""
    with running_relay(tmp_path) as url:
        yield url


@contextmanager
def running_relay(folder: Path, careless: bool = False) -> Iterator[str]:
    """nostr-relay on a free loopback port, its config, database and log in `folder`. `careless`: a
    relay that checks no signature and keeps expired events, as a broken or hostile one may (what
    reaches readers then is theirs to refuse)."""
    if not NOSTR_RELAY.exists():
        pytest.skip("nostr-relay is not installed (pip install -e '.[test]')")
    port = free_port()
    config = folder / "relay.yaml"
    storage = f"storage:\n  sqlalchemy.url: sqlite+aiosqlite:///{folder / 'relay.sqlite3'}\n"
    if careless:
        storage += "  validators: [nostr_relay.validators.is_not_too_large]\n"
    config.write_text(
        storage
        # expired events go within a second (readers check expiry themselves); an hour for a careless one
        + f"garbage_collector:\n  collect_interval: {3600 if careless else 1}\n"
        + f"gunicorn:\n  bind: 127.0.0.1:{port}\n  workers: 1\n  loglevel: warning\n"
    )
    with (folder / "relay.log").open("wb") as log:
        relay = subprocess.Popen([str(NOSTR_RELAY), "-c", str(config), "serve"], stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _accepts(port):
            if relay.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nostr-relay did not start:\n{(folder / 'relay.log').read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}"
    finally:
        os.killpg(relay.pid, signal.SIGTERM)
        try:
            relay.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(relay.pid, signal.SIGKILL)
            relay.wait(10)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def events_on(relay: str) -> list[Event]:
    """Every mesh-llm listing the relay holds, as nostr-sdk parsed it."""

    async def fetch() -> list[Event]:
        client = await client_for([relay])
        try:
            await client.connect(timedelta(seconds=5))
            return await client.fetch_events(ReqTarget.auto([listing_filter()]), timedelta(seconds=5))
        finally:
            await client.shutdown()

    return asyncio.run(fetch())


def directory(relay: str, now: float) -> Directory:
    return asyncio.run(read_directory([relay], 5.0, now))


def wait_for_event(relay: str, node: NodeProcess, mesh_id: str, check, timeout: float) -> Event:
    """The listing `node` put on the relay for `mesh_id` once it passes `check` (as read now)."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        node.check_alive()
        publisher = public_key_of(node)
        for event in events_on(relay):
            verdict = read(untrusted(event), time.time())
            if event.author().to_hex() == publisher and isinstance(verdict, Listing) and verdict.mesh_id == mesh_id and check(verdict):
                return event
            seen.append(f"{event.author().to_hex()[:8]}: {verdict}")
        time.sleep(0.5)
    raise AssertionError(f"no such listing by {node.name} after {timeout}s; seen {seen[-4:]}\n{node.log_tail()}")


def public_key_of(node: NodeProcess) -> str:
    """The node's Nostr public key; "" until the node made its key (the test must not make it first)."""
    return Keys.parse((node.home / KEY_FILE).read_text().strip()).public_key().to_hex() if (node.home / KEY_FILE).exists() else ""


def test_a_published_mesh_is_listed_found_taken_over_and_expires(mesh_bed, relay_url: str) -> None:
    a = mesh_bed.start("A", "--model", SMOLLM2, "--publish", "--mesh-name", "garage", "--region", "eu-test", "--relay", relay_url, env=PUBLISH_FAST)
    a.wait_ready(SMOLLM2)  # before B starts: two nodes starting beside a loading llama share 2 cores slowly
    b = mesh_bed.start("B", "--relay", relay_url, "--join-timeout", "30", join=a, env=PUBLISH_FAST)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(["A", "B"]), 60, "joined")
    mesh = mesh_identity.load(a.home)
    assert mesh is not None

    # A publishes (it was given --publish), signed by its own key, with the model it serves and B
    # counted (A's model may be ready before B joined: the listing follows within a renewal).
    published = wait_for_event(relay_url, a, mesh.mesh_id, lambda listing: SMOLLM2 in listing.served and listing.node_count == 2, 60)
    assert published.verify()
    listing = read(untrusted(published), time.time())
    assert isinstance(listing, Listing)
    assert (listing.name, listing.region, listing.node_count, listing.client_count) == ("garage", "eu-test", 2, 0)
    stored = published.as_json()
    for leaked in (
        mesh.secret.hex(),
        mesh.secret.hex().upper(),
        base64.b64encode(mesh.secret).decode(),
        base64.urlsafe_b64encode(mesh.secret).decode().rstrip("="),
    ):
        assert leaked not in stored, "the relay holds the mesh secret"
    assert a.token() not in stored, "the relay holds an invite token"
    # It carries the public-join credential instead: issued by this mesh, for the public, dialling A.
    public = credentials.decode_token(listing.join_token)
    authority = credentials.raw_public(credentials.authority_key(mesh.mesh_id, mesh.secret))
    assert public.credential.kind == credentials.Kind.PUBLIC and public.credential.credential_id == "public-1"
    assert credentials.refusal(public.credential, mesh.mesh_id, authority, (), "anyone") is None
    assert public.addresses == (decode(a.token()).bootstrap[0],)
    # B holds the mesh's settings too (gossip), but it is not its turn: it has not even made a key.
    assert not (b.home / KEY_FILE).exists()

    shown = subprocess.run([*MESH_LLM_ARGV, "discover", "--relay", relay_url], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if line.startswith(mesh.mesh_id)]
    assert len(rows) == 1 and "garage" in rows[0] and "eu-test" in rows[0] and SMOLLM2 in rows[0], shown.stdout

    # The publisher dies: B, which was never given --publish, takes over with its own key.
    a.kill()
    a_stopped = time.time()
    taken_over = wait_for_event(relay_url, b, mesh.mesh_id, lambda listing: listing.created_at > int(a_stopped), 60)
    assert taken_over.verify()
    after = read(untrusted(taken_over), time.time())
    assert isinstance(after, Listing) and (after.name, after.region) == ("garage", "eu-test")
    now_listed = directory(relay_url, time.time()).reading.listings
    assert [(entry.mesh_id, entry.publisher) for entry in now_listed] == [(mesh.mesh_id, public_key_of(b))]

    # A's last listing lives until 120 s after A stopped, not a second more.
    last_of_a = [event for event in events_on(relay_url) if event.author().to_hex() == public_key_of(a)]
    assert len(last_of_a) == 1  # addressable: each renewal replaced the one before
    assert isinstance(read(untrusted(last_of_a[0]), a_stopped + LIFETIME - 5), Listing)
    assert read(untrusted(last_of_a[0]), a_stopped + LIFETIME + 1) is Rejection.EXPIRED

    # Once B stops too, nothing renews the mesh's listing: gone for readers 120 s later.
    b.kill()
    b_stopped = time.time()
    assert [entry.mesh_id for entry in directory(relay_url, b_stopped + LIFETIME - 5).reading.listings] == [mesh.mesh_id]
    expired = directory(relay_url, b_stopped + LIFETIME + 1)
    assert expired.reading.listings == ()
    assert expired.reading.rejected[Rejection.EXPIRED] == 2, expired.reading.rejected

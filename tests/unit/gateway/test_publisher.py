"""Publishing a mesh's listing (discovery/publisher.py): only the elected member publishes, the
listing counts the mesh as readers should see it and never carries the mesh secret, it is renewed
every interval (at once when it changes, at most every MIN_GAP), not renewed while full, and a
relay that is down is retried without stopping the gateway."""

from __future__ import annotations

import asyncio
import math
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from services.common.records import (
    MeshView,
    ModelDemand,
    NodeRecord,
    Peer,
    PeerStatus,
    ProcessKind,
    ProcessState,
    Publicity,
    Role,
    ServedModel,
)
from services.gateway.discovery.listing import KIND, MAX_STRING, Listing, ListingEvent, content_of, read, tags_of
from services.gateway.discovery.publisher import LIFETIME, MIN_GAP, RETRY, Publisher, Quiet, listing_of, turn, wait_before
from services.gateway.mirror import MeshMirror

NOW = 1_800_000_000
PUBKEY = "ab" * 32
SECRET = bytes(range(32))
LISTED = Publicity(mesh_name="garage", region="eu-west", max_clients=3, publish=True, origin="a")
GB = 10**9


def served(model: str, state: ProcessState = ProcessState.READY, kind: ProcessKind = ProcessKind.LLAMA_SERVER) -> ServedModel:
    return ServedModel(model_id=model, path=f"/m/{model}.gguf", state=state, kind=kind)


A = NodeRecord("a", "A", Role.SERVING, 8 * GB, served=(served("Qwen3-8B"), served("Loading", ProcessState.STARTING)), publicity=LISTED)
B = NodeRecord("b", "B", Role.SERVING, 16 * GB, served=(served("GLM-4", kind=ProcessKind.RPC_SERVER),), publicity=LISTED)
S = NodeRecord("s", "S", Role.STANDBY, 4 * GB, publicity=LISTED)
C = NodeRecord("c", "C", Role.CLIENT, publicity=LISTED)


def view_of(own: NodeRecord, *peers: NodeRecord, demand: tuple[ModelDemand, ...] = ()) -> MeshView:
    return MeshView(
        own=own,
        peers=tuple(Peer(peer, f"127.0.0.{i + 2}:7000", PeerStatus.ALIVE) for i, peer in enumerate(peers)),
        mesh_id="7f3a9c01d2e4b5a6",
        secret=SECRET,
        demand=demand,
    )


MESH = view_of(A, B, S, C, demand=(ModelDemand("Qwen3-8B", 5), ModelDemand("Gemma-3", 2)))


@pytest.mark.parametrize(
    ("mesh", "expected"),
    [
        pytest.param(MESH, None, id="the origin publishes"),
        pytest.param(view_of(B, A, S), Quiet("node a publishes the listing"), id="another member's turn"),
        pytest.param(view_of(B, S), None, id="origin gone: the lowest id holding the listing"),
        pytest.param(view_of(replace(A, publicity=Publicity(mesh_name="garage", origin="a"))), Quiet("the mesh is not published"), id="named only"),
        pytest.param(replace(MESH, mesh_id=""), Quiet("the mesh is not known yet"), id="gossip has not told the mesh yet"),
    ],
)
def test_whose_turn(mesh: MeshView, expected: Quiet | None) -> None:
    assert turn(mesh) == expected


def test_the_listing_counts_the_mesh_as_readers_see_it() -> None:
    listing = listing_of(MESH, PUBKEY, "0.1.0", "", NOW)
    assert (listing.mesh_id, listing.name, listing.region, listing.max_clients) == ("7f3a9c01d2e4b5a6", "garage", "eu-west", 3)
    assert listing.served == ("Qwen3-8B",)  # ready llama-servers only: not a loading one, not a split's worker
    assert listing.wanted == ("Gemma-3",)  # asked for, served by nobody
    assert (listing.node_count, listing.client_count, listing.memory_bytes) == (3, 1, 28 * GB)
    assert (listing.created_at, listing.expires_at, listing.publisher) == (NOW, NOW + LIFETIME, PUBKEY)
    assert read(_event(listing), NOW) == listing


def test_the_listing_never_carries_the_mesh_secret() -> None:
    listing = listing_of(MESH, PUBKEY, "0.1.0", "", NOW)
    published = content_of(listing) + repr(tags_of(listing))
    for encoding in (SECRET.hex(), SECRET.hex().upper(), SECRET.decode("latin-1")):
        assert encoding not in published


def test_a_name_readers_would_refuse_is_a_settings_error() -> None:
    bad = replace(MESH, own=replace(A, publicity=replace(LISTED, mesh_name="x" * (MAX_STRING + 1))))
    with pytest.raises(ValueError, match="readers would refuse"):
        listing_of(bad, PUBKEY, "0.1.0", "", NOW)


FIRST = listing_of(MESH, PUBKEY, "0.1.0", "", NOW)
CHANGED = replace(FIRST, served=("Qwen3-8B", "Gemma-3"))
FULL = replace(FIRST, client_count=3)


@pytest.mark.parametrize(
    ("listing", "last", "elapsed", "expected", "interval"),
    [
        pytest.param(FIRST, None, 0.0, 0.0, 60.0, id="first: at once"),
        pytest.param(replace(FIRST, created_at=NOW + 10), FIRST, 10.0, 50.0, 60.0, id="unchanged: at the interval"),
        pytest.param(replace(FIRST, created_at=NOW + 70), FIRST, 70.0, 0.0, 60.0, id="unchanged, interval past: now"),
        pytest.param(CHANGED, FIRST, 1.0, MIN_GAP - 1.0, 60.0, id="changed: after the minimum gap"),
        pytest.param(CHANGED, FIRST, 30.0, 0.0, 60.0, id="changed, gap past: now"),
        pytest.param(CHANGED, FIRST, 1.0, 1.0, 2.0, id="changed, with an interval under the gap: at the interval"),
        pytest.param(FULL, FIRST, 30.0, 0.0, 60.0, id="became full: said at once, which delists it"),
        pytest.param(FULL, FULL, 300.0, math.inf, 60.0, id="still full: not renewed"),
    ],
)
def test_when_the_listing_is_due(listing: Listing, last: Listing | None, elapsed: float, expected: float, interval: float) -> None:
    assert wait_before(listing, last, NOW, NOW + elapsed, interval) == expected


def test_a_relay_that_is_down_is_retried_and_stops_nothing(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        publisher = Publisher(MeshMirror(), [f"ws://127.0.0.1:{port}"], tmp_path, 60.0, "0.1.0", relay_timeout=0.2)

        async def step() -> tuple[float, float]:
            first = await publisher._step(MESH, NOW)
            return first, await publisher._step(MESH, NOW + 1)

        assert asyncio.run(step()) == (RETRY, RETRY - 1)
    assert (tmp_path / "nostr.key").stat().st_mode & 0o777 == 0o600


def _event(listing: Listing) -> ListingEvent:
    return ListingEvent(listing.publisher, KIND, listing.created_at, tags_of(listing), content_of(listing), signature_ok=True)

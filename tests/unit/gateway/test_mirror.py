"""The gateway's mirror through a gossip restart: the new gossip's peers at once, our own record
kept until placement has told the new gossip again (or the hold ends)."""

from __future__ import annotations

import asyncio

import pytest

from services.common.records import MeshView, NodeRecord, Peer, ProcessState, ServedModel
from services.gateway.mirror import OWN_RECORD_HOLD, MeshMirror, Reborn, shown_view

SERVING = NodeRecord("me", "me", served=(ServedModel("m", "/m.gguf", ProcessState.READY, port=8080),), version=10)
BLANK = NodeRecord("me", "me", version=500)  # a restarted gossip's own record: a newer, empty life
REPUBLISHED = NodeRecord("me", "me", served=(ServedModel("m", "/m.gguf", ProcessState.READY, port=8080),), version=501)
PEER = Peer(NodeRecord("peer", "peer"), "10.0.0.2:7000", "alive")
BEFORE = MeshView(own=SERVING)
AFTER = MeshView(own=BLANK, peers=(PEER,))


@pytest.mark.parametrize(
    ("fresh", "reborn", "now", "own"),
    [
        (AFTER, None, 0.0, BLANK),  # no restart seen: gossip's word stands
        (AFTER, Reborn(500, 0.0), 1.0, SERVING),  # still blank: our record as it was
        (MeshView(own=REPUBLISHED), Reborn(500, 0.0), 1.0, REPUBLISHED),  # placement told it again
        (AFTER, Reborn(500, 0.0), OWN_RECORD_HOLD, BLANK),  # nothing came: the blank record is the truth
    ],
)
def test_shown_view(fresh: MeshView, reborn: Reborn | None, now: float, own: NodeRecord) -> None:
    shown = shown_view(BEFORE, fresh, reborn, now)
    assert shown.own == own and shown.peers == fresh.peers


def test_a_reopened_watch_keeps_our_record_until_placement_publishes_it_again() -> None:
    async def scenario() -> list[NodeRecord]:
        mirror = MeshMirror()
        shown = []
        for opened, view in [(1, BEFORE), (2, AFTER), (2, MeshView(own=REPUBLISHED))]:
            if opened > mirror.opened:
                mirror.opening()  # as follow does on each (re)open of the Watch
            await mirror.receive(view, 1.0)
            shown.append(mirror.view.own)
        return shown

    assert asyncio.run(scenario()) == [SERVING, SERVING, REPUBLISHED]

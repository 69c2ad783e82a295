"""The gateway's mirror of the mesh picture, followed from gossip's Watch stream.

Owns the latest MeshView and its change counter; decisions over it live elsewhere (routing).
While gossip is away (restarting), the last view stays: the gateway keeps routing on it. A gossip
started again knows nothing of this node's models until placement tells it again (a moment later):
until then our own record stays as it was, so local requests are not refused in between.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable
from dataclasses import dataclass, replace

import grpc

from services.common import calls
from services.common.changes import Changes
from services.common.records import MeshView, NodeRecord
from services.common.records_proto import view_from_proto
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc

# Seconds our previous own record is shown at most after gossip came back: placement re-publishes
# within a second; a node with nothing to publish must not keep its previous record for good.
OWN_RECORD_HOLD = 10.0


@dataclass(frozen=True)
class Reborn:
    """Gossip came back (its Watch was opened again) with an own record placement has not filled yet."""

    blank_version: int  # the version of the own record it came back with
    since: float  # monotonic seconds: when its first view arrived


def shown_view(previous: MeshView, fresh: MeshView, reborn: Reborn | None, now: float) -> MeshView:
    """`fresh`, with our `previous` own record while a restarted gossip's is still the blank one."""
    if reborn is None or fresh.own.version != reborn.blank_version or now - reborn.since >= OWN_RECORD_HOLD:
        return fresh
    return replace(fresh, own=previous.own)


class MeshMirror:
    def __init__(self) -> None:
        # Until gossip answers, the node knows nothing, not even its own id.
        self.view = MeshView(own=NodeRecord(node_id="", name=""))
        self.changes = Changes()
        self.opened = 0  # Watch streams opened: after the first, each is a gossip come back
        self.reborn: Reborn | None = None
        self._first_of_stream = False

    async def follow(self, channel: grpc.aio.Channel) -> None:
        """Keep the view current, through gossip's restarts (calls.follow opens its Watch again)."""
        stub = gossip_pb2_grpc.GossipStub(channel)

        def watch() -> AsyncIterable[gossip_pb2.MeshView]:
            self.opening()
            return stub.Watch(gossip_pb2.WatchRequest(), wait_for_ready=True)

        async for message in calls.follow(watch, "Gossip.Watch"):
            await self.receive(view_from_proto(message), time.monotonic())

    def opening(self) -> None:
        """A Watch stream is being opened: its first view may come from a gossip started again."""
        self.opened += 1
        self._first_of_stream = True

    async def receive(self, fresh: MeshView, now: float) -> None:
        """Show a view gossip sent (see shown_view) and tell the watchers."""
        if self._first_of_stream and self.opened > 1:
            self.reborn = Reborn(fresh.own.version, now)
        self._first_of_stream = False
        self.view = shown_view(self.view, fresh, self.reborn, now)
        if self.view is fresh:
            self.reborn = None
        await self.changes.publish()

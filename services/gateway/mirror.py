"""The gateway's mirror of the mesh picture, followed from gossip's Watch stream.

Owns the latest MeshView and its change counter; decisions over it live elsewhere (routing).
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from services.common.changes import Changes
from services.common.logs import event
from services.common.records import MeshView, NodeRecord
from services.common.records_proto import view_from_proto
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc

log = logging.getLogger(__name__)


class MeshMirror:
    def __init__(self) -> None:
        # Until gossip answers, the node knows nothing, not even its own id.
        self.view = MeshView(own=NodeRecord(node_id="", name=""))
        self.changes = Changes()

    async def follow(self, channel: grpc.aio.Channel) -> None:
        """Keep the view current; reconnect if gossip restarts."""
        stub = gossip_pb2_grpc.GossipStub(channel)
        while True:
            try:
                async for message in stub.Watch(gossip_pb2.WatchRequest(), wait_for_ready=True):
                    self.view = view_from_proto(message)
                    await self.changes.publish()
            except grpc.aio.AioRpcError as lost:
                # Gossip restarting is survivable: keep serving the last view and reconnect.
                event(log, "gossip watch lost", logging.WARNING, code=lost.code().name)
                await asyncio.sleep(0.5)

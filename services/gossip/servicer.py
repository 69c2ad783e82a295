"""gRPC adapter of gossip: proto in, Membership call, proto out. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from services.common.records_proto import record_to_proto, update_from_proto
from services.gossip.membership import Membership
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc, node_pb2


class GossipServicer(gossip_pb2_grpc.GossipServicer):
    def __init__(self, membership: Membership) -> None:
        self.membership = membership

    async def GetSelf(self, request: gossip_pb2.GetSelfRequest, context: grpc.aio.ServicerContext) -> node_pb2.NodeRecord:
        return record_to_proto(self.membership.own)

    async def UpdateSelf(self, request: gossip_pb2.SelfUpdate, context: grpc.aio.ServicerContext) -> node_pb2.NodeRecord:
        try:
            record = await self.membership.update_self(update_from_proto(request))
        except ValueError as invalid:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(invalid))
        return record_to_proto(record)

    async def Watch(self, request: gossip_pb2.WatchRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[gossip_pb2.MeshView]:
        seen = -1
        while True:
            seen = await self.membership.changes.wait_newer(seen)
            yield gossip_pb2.MeshView(
                self=record_to_proto(self.membership.own),
                peers=[record_to_proto(peer) for peer in self.membership.peers.values()],
            )

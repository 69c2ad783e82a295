"""Gossip process: wires settings, Membership and the gRPC servicer."""

from __future__ import annotations

import asyncio
import time

from services.common import grpc_server, lifecycle
from services.common.records import NodeRecord
from services.common.settings import NodeSettings, node_id
from services.gossip.membership import Membership
from services.gossip.servicer import GossipServicer
from services.gossip.settings import GossipSettings
from services.proto.mesh.v1 import gossip_pb2_grpc


async def main(node: NodeSettings, settings: GossipSettings) -> None:
    membership = Membership(NodeRecord(node_id=node_id(node), name=node.name, version=1, updated_at=time.time()))
    server = await grpc_server.start(
        node.gossip_grpc_port, lambda s: gossip_pb2_grpc.add_GossipServicer_to_server(GossipServicer(membership), s)
    )
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop(grace=1.0)


def main_from_environment() -> None:
    lifecycle.run_service("gossip", main, GossipSettings)

"""Gossip process: wires settings, Membership, the gossip loop and the gRPC servicer; leaves on exit."""

from __future__ import annotations

import asyncio
import time

from services.common import grpc_server, lifecycle, mesh_identity, metrics_http, publicity
from services.common.records import NodeRecord
from services.common.settings import NodeSettings, node_id
from services.gossip import adoption
from services.gossip.membership import Membership
from services.gossip.metrics import GossipMetrics, registry_for
from services.gossip.probe import GossipProtocol
from services.gossip.servicer import GossipServicer
from services.gossip.settings import GossipSettings
from services.proto.mesh.v1 import gossip_pb2_grpc


async def main(node: NodeSettings, settings: GossipSettings) -> None:
    # Versions start from the clock so a restarted node's record outranks its previous life's.
    me = node_id(node)
    flagged = publicity.from_flags(me, settings.mesh_name, settings.region, settings.max_clients, settings.publish)
    own = NodeRecord(node_id=me, name=node.name, version=int(time.time() * 1000), updated_at=time.time(), publicity=flagged)
    mesh = mesh_identity.mesh_of(node.home, settings.token())
    membership = Membership(own, settings.address, mesh, node.home, settings.demand_ttl)
    async with grpc_server.channel(node.address("gateway")) as gateway:
        metrics = GossipMetrics()
        protocol = GossipProtocol(membership, settings.timings(), gateway, metrics)
        metrics_http.serve(node.gossip_metrics_port, registry_for(metrics, membership, lambda: protocol.rounds))
        server = await grpc_server.start(node.gossip_grpc_port, lambda s: gossip_pb2_grpc.add_GossipServicer_to_server(GossipServicer(membership, protocol), s))
        # Its state is loaded (above) and its servicer answers: a joining node's gossip serves too.
        await server.health.set(True, "state loaded")
        adopting = asyncio.create_task(adoption.follow(membership))
        try:
            await protocol.run(settings.bootstrap(), settings.join_timeout)
        finally:
            adopting.cancel()
            # Graceful leave: peers drop us at once instead of suspecting us.
            await asyncio.wait_for(protocol.leave(), 2.0)
            await server.stop(grace=1.0)


def main_from_environment() -> None:
    lifecycle.run_service("gossip", main, GossipSettings)

"""Gossip process: wires settings, Membership, the gossip loop and the gRPC servicer; leaves on exit."""

from __future__ import annotations

import asyncio

from services.common import clock, grpc_server, lifecycle, mesh_identity, metrics_http, publicity
from services.common.records import NodeRecord
from services.common.settings import NodeSettings, node_id
from services.gossip import adoption
from services.gossip.blackboard.board import Author, Board
from services.gossip.blackboard.posts import board_on
from services.gossip.blackboard.store import Store
from services.gossip.blackboard.sync import BoardSync
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
    own = NodeRecord(node_id=me, name=node.name, version=int(clock.now() * 1000), updated_at=clock.now(), publicity=flagged)
    mesh = mesh_identity.mesh_of(node.home, settings.token())
    membership = Membership(own, settings.address, mesh, node.home, settings.demand_ttl)
    async with grpc_server.channel(node.address("gateway")) as gateway:
        metrics = GossipMetrics()
        timings = settings.timings()
        protocol = GossipProtocol(membership, timings, gateway, metrics)
        # On in a private mesh; a mesh turns public when a member publishes it (adoption, below).
        board = Board(Store(node.home), Author(me, node.name), lambda: board_on(membership.own.publicity.publish, settings.blackboard), metrics)
        board_sync = BoardSync(board, membership, protocol.send, timings.board_interval, timings.probe_timeout * 2)
        metrics_http.serve(node.gossip_metrics_port, registry_for(metrics, membership, lambda: protocol.rounds))
        servicer = GossipServicer(membership, protocol, board_sync)
        server = await grpc_server.start(node.gossip_grpc_port, lambda s: gossip_pb2_grpc.add_GossipServicer_to_server(servicer, s))
        # Its state is loaded (above) and its servicer answers: a joining node's gossip serves too.
        await server.health.set(True, "state loaded")
        adopting = asyncio.create_task(adoption.follow(membership))
        syncing = asyncio.create_task(board_sync.run())
        try:
            await protocol.run(settings.bootstrap(), settings.join_timeout)
        finally:
            adopting.cancel()
            syncing.cancel()
            board.store.close()
            # Graceful leave: peers drop us at once instead of suspecting us.
            await asyncio.wait_for(protocol.leave(), 2.0)
            await server.stop(grace=1.0)


def main_from_environment() -> None:
    lifecycle.run_service("gossip", main, GossipSettings)

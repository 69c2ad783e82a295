"""Placement process: wires settings, the convergence loop and the gRPC servicer."""

from __future__ import annotations

import asyncio

from services.common import grpc_server, lifecycle, metrics_http
from services.common.settings import NodeSettings, split_secret
from services.placement.convergence import Convergence
from services.placement.servicer import PlacementServicer
from services.placement.settings import PlacementSettings
from services.proto.mesh.v1 import gateway_pb2_grpc, gossip_pb2_grpc, placement_pb2_grpc, runner_pb2_grpc


async def main(node: NodeSettings, settings: PlacementSettings) -> None:
    async with (
        grpc_server.channel(node.address("gossip")) as gossip,
        grpc_server.channel(node.address("runner")) as runner,
        grpc_server.channel(node.address("gateway")) as gateway,
    ):
        stubs = (gossip_pb2_grpc.GossipStub(gossip), runner_pb2_grpc.RunnerStub(runner), gateway_pb2_grpc.GatewayStub(gateway))
        convergence = Convergence(settings, *stubs, split_secret=split_secret(node))
        metrics_http.serve(node.placement_metrics_port, convergence.metrics.registry)
        server = await grpc_server.start(
            node.placement_grpc_port,
            lambda s: placement_pb2_grpc.add_PlacementServicer_to_server(PlacementServicer(convergence), s),
        )
        try:
            async with asyncio.TaskGroup() as group:
                # Placement can act only while it hears gossip's mesh and can ask the runner.
                group.create_task(grpc_server.serve_while_reachable(server.health, {"gossip": gossip, "runner": runner}))
                group.create_task(convergence.run())
        finally:
            await server.stop(grace=1.0)


def main_from_environment() -> None:
    lifecycle.run_service("placement", main, PlacementSettings)

"""Gateway process: follows gossip, serves the API and the console, answers gRPC health."""

from __future__ import annotations

import asyncio

from services.common import grpc_server, http_server, lifecycle
from services.common.settings import NodeSettings
from services.gateway.app import create_api_app, create_console_app
from services.gateway.mesh_view import MeshMirror
from services.gateway.metrics import GatewayMetrics
from services.gateway.openai.relay import Relay
from services.gateway.settings import GatewaySettings


async def main(node: NodeSettings, settings: GatewaySettings) -> None:
    mirror = MeshMirror()
    metrics = GatewayMetrics()
    relay = Relay(settings, mirror, metrics)
    grpc = await grpc_server.start(node.gateway_grpc_port, lambda s: None)
    try:
        async with grpc_server.channel(node.address("gossip")) as gossip, asyncio.TaskGroup() as group:
            group.create_task(mirror.follow(gossip))
            group.create_task(http_server.serve(create_console_app(settings, mirror), settings.console_host, settings.console_port))
            if settings.api_enabled:
                group.create_task(http_server.serve(create_api_app(settings, mirror, relay, metrics), settings.api_host, settings.api_port))
    finally:
        await relay.close()
        await grpc.stop(grace=1.0)


def main_from_environment() -> None:
    lifecycle.run_service("gateway", main, GatewaySettings)

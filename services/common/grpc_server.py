"""The gRPC server shell every service uses: loopback only, standard health check.

Owns binding and health; servicers are registered by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


async def start(port: int, register: Callable[[grpc.aio.Server], None]) -> grpc.aio.Server:
    """A started server on 127.0.0.1:port answering `grpc.health.v1.Health` as SERVING."""
    # No SO_REUSEPORT (gRPC's default on Linux): a second process given the same port must fail to
    # start, not silently share the port's connections with ours.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # Security invariant: gRPC is never reachable from other machines.
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server


def channel(address: str) -> grpc.aio.Channel:
    """A channel to a sibling service; calls wait for it to come up instead of failing."""
    return grpc.aio.insecure_channel(address)

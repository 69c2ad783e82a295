"""Ports a node picks for its services are held from other processes until the service binds them."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest

from services.common.ports import reserve_tcp_port

HOST = "127.0.0.1"


def test_no_bind_to_port_zero_is_handed_a_reserved_port() -> None:
    reserved = {reserve_tcp_port() for _ in range(100)}
    handed = set()
    # Unheld, 100 ports of the ~28k ephemeral ones would be handed out ~10 times in 3000 binds.
    for _ in range(3000):
        with socket.socket() as other:
            other.bind((HOST, 0))
            handed.add(other.getsockname()[1])
    assert not reserved & handed


def test_a_server_that_reuses_addresses_binds_it_and_a_careless_one_cannot() -> None:
    port = reserve_tcp_port()
    with socket.socket() as careless, pytest.raises(OSError):
        careless.bind((HOST, port))
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, port))
        listener.listen(1)


def test_a_grpc_server_binds_a_reserved_port() -> None:
    async def serve(port: int) -> int:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])  # as services/common/grpc_server.py
        bound = server.add_insecure_port(f"{HOST}:{port}")
        await server.start()
        await server.stop(None)
        return bound

    port = reserve_tcp_port()
    assert asyncio.run(serve(port)) == port

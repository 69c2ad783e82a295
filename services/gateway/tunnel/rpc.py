"""RPC tunnels: a loopback TCP port on the host that reaches a worker's rpc-server over QUIC.

llama-server on the host dials 127.0.0.1:<local port>; each connection becomes one QUIC stream
(kind RPC) to the worker's gateway, which connects it to its rpc-server on loopback. Bytes flow
both ways as they come. The far end only connects to ports its own node publishes as rpc-servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from services.common.logs import event
from services.gateway.peers.endpoint import MeshConnection, read_frame
from services.gateway.peers.framing import StreamKind, encode_frame
from services.gateway.peers.links import PeerLinks

log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 16

# (worker address, direction, bytes)
TunnelCounter = Callable[[str, str, int], None]


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: Callable[[int], None]) -> None:
    """Copy until end of stream, then signal end of stream onwards."""
    try:
        while chunk := await reader.read(CHUNK_BYTES):
            writer.write(chunk)
            count(len(chunk))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        # The other side went away: closing below tells the far end.
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


class RpcTunnels:
    """The host side: one listening loopback port per worker rpc-server."""

    def __init__(self, links: PeerLinks, count: TunnelCounter, connect_timeout: float) -> None:
        self.links = links
        self.count = count
        self.connect_timeout = connect_timeout
        self.servers: dict[int, asyncio.Server] = {}

    async def open(self, address: str, remote_port: int) -> int:
        """A loopback port that reaches rpc-server port `remote_port` of the peer at `address`."""

        async def on_connection(local_reader: asyncio.StreamReader, local_writer: asyncio.StreamWriter) -> None:
            try:
                connection = await self.links.connection_to(address, self.connect_timeout)
                quic_reader, quic_writer = await connection.create_stream()
            except (TimeoutError, ConnectionError, OSError) as failure:
                event(log, "rpc tunnel failed", logging.WARNING, worker=address, reason=str(failure))
                local_writer.close()
                return
            quic_writer.write(bytes([StreamKind.RPC]) + encode_frame(json.dumps({"port": remote_port}).encode()))
            await asyncio.gather(
                pipe(local_reader, quic_writer, lambda n: self.count(address, "sent", n)),
                pipe(quic_reader, local_writer, lambda n: self.count(address, "received", n)),
            )
            local_writer.close()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.servers[port] = server
        event(log, "rpc tunnel open", worker=address, remote_port=remote_port, local_port=port)
        return port

    def close(self, port: int) -> None:
        server = self.servers.pop(port, None)
        if server is not None:
            server.close()

    def close_all(self) -> None:
        for port in list(self.servers):
            self.close(port)


class RpcTunnelServer:
    """The worker side: connects a peer's RPC stream to one of this node's rpc-servers."""

    def __init__(self, rpc_ports: Callable[[], set[int]]) -> None:
        self.rpc_ports = rpc_ports

    async def serve(self, connection: MeshConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = int(json.loads(await read_frame(reader))["port"])
        if port not in self.rpc_ports():
            # Only our published rpc-servers: a peer must not reach any other local port.
            connection.refuse(f"port {port} is not an rpc-server of this node")
            return
        try:
            local_reader, local_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as failure:
            event(log, "rpc-server unreachable", logging.WARNING, port=port, reason=str(failure))
            return
        await asyncio.gather(pipe(reader, local_writer, lambda n: None), pipe(local_reader, writer, lambda n: None))
        local_writer.close()

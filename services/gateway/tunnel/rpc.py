"""RPC tunnels: a loopback TCP port on the host that reaches a worker's rpc-server over QUIC.

llama-server on the host dials 127.0.0.1:<local port>; each connection becomes one QUIC stream
(kind RPC) to the worker's gateway, which connects it to its rpc-server on loopback. The far end
only connects to ports its own node publishes as rpc-servers.

Bytes are spliced, not piped: each TCP read goes out on the QUIC stream in the same event-loop
turn, and each QUIC stream frame is written to TCP as it is decoded (MeshConnection.splice). A
split crosses this path twice per generated token in each gateway, so every loop turn saved is
latency the model's threads no longer wait for.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping

from services.common.logs import event
from services.gateway.peers.admission import AdmissionRefused
from services.gateway.peers.endpoint import MeshConnection
from services.gateway.peers.framing import StreamKind, encode_frame, json_head, read_frame
from services.gateway.peers.links import PeerLinks
from services.runner.rpc_tls import dial_host

log = logging.getLogger(__name__)

# (worker address, direction, bytes)
TunnelCounter = Callable[[str, str, int], None]
STALE_PORT = 0x101  # stream error: the port asked for is not an rpc-server here (any more)


class Splice(asyncio.Protocol):
    """One loopback TCP connection joined to one QUIC stream, both ways, half-closes included."""

    def __init__(self, count: Callable[[str, int], None] = lambda direction, size: None, on_connected: Callable[[Splice], None] | None = None) -> None:
        self.count = count
        self.on_connected = on_connected  # the host side: opens the QUIC stream, reading paused meanwhile
        self.transport: asyncio.Transport | None = None
        self.connection: MeshConnection | None = None
        self.stream_id = -1
        self.ended = False  # we sent the end of our side of the stream
        self.closed = asyncio.get_running_loop().create_future()

    def join(self, connection: MeshConnection, stream_id: int) -> None:
        self.connection, self.stream_id = connection, stream_id

    # The TCP side (asyncio.Protocol).
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP connection's, from asyncio's server
        self.transport = transport
        if self.on_connected is not None:
            transport.pause_reading()  # llama-server's first bytes wait in the kernel until the stream is open
            self.on_connected(self)

    def data_received(self, data: bytes) -> None:
        assert self.connection is not None
        self.connection.send(self.stream_id, data)
        self.count("sent", len(data))

    def eof_received(self) -> bool:
        assert self.connection is not None
        self.connection.send(self.stream_id, b"", end=True)
        self.ended = True
        return True  # keep our sending side open: the far end may still answer

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connection is not None:
            self.connection.finish(self.stream_id, end=not self.ended)
        if not self.closed.done():
            self.closed.set_result(None)

    # The QUIC side (StreamSink).
    def stream_data(self, data: bytes, end: bool) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return  # our side closed: we asked the peer to stop (MeshConnection.finish)
        if data:
            self.transport.write(data)
            self.count("received", len(data))
        if end:
            # The far end stops sending: pass the half-close on, or close if TCP cannot half-close.
            if not self.transport.can_write_eof():
                self.transport.close()
                return
            try:
                self.transport.write_eof()
            except OSError:
                # The local end reset its socket and asyncio has not seen it yet (ENOTCONN): the
                # connection is gone either way, and connection_lost ends the stream.
                self.transport.abort()

    def stream_lost(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class RpcTunnels:
    """The host side: one listening loopback port per worker rpc-server."""

    def __init__(self, links: PeerLinks, count: TunnelCounter, connect_timeout: float) -> None:
        self.links = links
        self.count = count
        self.connect_timeout = connect_timeout
        self.servers: dict[int, asyncio.Server] = {}
        self._joining: set[asyncio.Task[None]] = set()

    async def reach(self, address: str, remote_port: int, direct_host: str = "") -> tuple[str, int]:
        """(endpoint, local port) where llama-server's --rpc reaches rpc-server `remote_port` of the
        peer at `address`: `direct_host` itself (a TLS rpc-server, which admits only the split's
        key) when a TCP connection to it gets through in time, local port 0; else a tunnel's."""
        if direct_host and await self._connects(direct_host, remote_port):
            event(log, "rpc direct", worker=address, endpoint=endpoint(direct_host, remote_port))
            return endpoint(direct_host, remote_port), 0
        local_port = await self.open(address, remote_port)
        return f"127.0.0.1:{local_port}", local_port

    async def _connects(self, host: str, port: int) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.connect_timeout)
        except (OSError, TimeoutError) as failure:
            event(log, "rpc direct unreachable", logging.INFO, endpoint=f"{host}:{port}", reason=str(failure) or type(failure).__name__)
            return False
        writer.close()
        return True

    async def open(self, address: str, remote_port: int) -> int:
        """A loopback port that reaches rpc-server port `remote_port` of the peer at `address`."""

        def join_later(splice: Splice) -> None:
            task = asyncio.get_running_loop().create_task(self._join(splice, address, remote_port))
            self._joining.add(task)
            task.add_done_callback(self._joining.discard)

        def on_connection() -> Splice:
            return Splice(lambda direction, size: self.count(address, direction, size), join_later)

        server = await asyncio.get_running_loop().create_server(on_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.servers[port] = server
        event(log, "rpc tunnel open", worker=address, remote_port=remote_port, local_port=port)
        return port

    async def _join(self, splice: Splice, address: str, remote_port: int) -> None:
        """Open the QUIC stream for a new local connection, then let its bytes flow."""
        assert splice.transport is not None
        try:
            connection = await self.links.connection_to(address, self.connect_timeout)
        except (TimeoutError, ConnectionError, OSError, AdmissionRefused) as failure:
            # Refused too (a revoked credential, another mesh): the local end closes at once, so
            # llama-server sees its RPC connection fail instead of waiting on it.
            event(log, "rpc tunnel failed", logging.WARNING, worker=address, reason=str(failure))
            splice.transport.close()
            return
        if splice.transport.is_closing():
            return
        splice.join(connection, connection.open_spliced(splice))
        connection.send(splice.stream_id, bytes([StreamKind.RPC]) + encode_frame(json.dumps({"port": remote_port}).encode()))
        splice.transport.resume_reading()

    def close(self, port: int) -> None:
        server = self.servers.pop(port, None)
        if server is not None:
            server.close()

    def close_all(self) -> None:
        for port in list(self.servers):
            self.close(port)


def endpoint(host: str, port: int) -> str:
    """host:port as llama.cpp's --rpc reads it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RpcTunnelServer:
    """The worker side: connects a peer's RPC stream to one of this node's rpc-servers."""

    def __init__(self, rpc_ports: Callable[[], Mapping[int, str]]) -> None:
        self.rpc_ports = rpc_ports  # port -> the address the rpc-server listens on ("": 127.0.0.1)

    async def serve(self, connection: MeshConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = json_head(await read_frame(reader)).get("port")
        if not isinstance(port, int):
            raise ValueError("malformed RPC tunnel head")  # endpoint.py drops the peer's connection
        listening = self.rpc_ports()
        if port not in listening:
            # Only our published rpc-servers: a peer must not reach any other local port. The peer
            # holds the mesh secret, so this is a stale port (our rpc-server restarted), not an
            # attack: drop the stream, not the connection its gossip and requests share.
            event(log, "rpc stream refused", logging.WARNING, reason=f"port {port} is not an rpc-server of this node", peer=connection.peer_node_id or "?")
            connection.cancel_stream(writer.get_extra_info("stream_id"), STALE_PORT)
            return
        try:
            transport, splice = await asyncio.get_running_loop().create_connection(Splice, dial_host(listening[port]), port)
        except OSError as failure:
            event(log, "rpc-server unreachable", logging.WARNING, port=port, reason=str(failure))
            return
        stream_id = writer.get_extra_info("stream_id")
        splice.join(connection, stream_id)
        connection.splice(stream_id, reader, splice)
        try:
            # The stream stays ours until the TCP side closes; a reset from the peer cancels us.
            await splice.closed
        finally:
            transport.close()

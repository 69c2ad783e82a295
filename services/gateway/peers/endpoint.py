"""The node's one QUIC endpoint: a single UDP socket that accepts peers and connects to them.

Owns the connections on the socket (read in batches by peers/udp.py): which are admitted, the
typed streams a peer opens (served only once it is admitted), spliced byte streams, and closing a
connection with a reason. The admission exchange is admission.py's; what a stream carries is its
handler's (gossip, tunnels). aioquic's QuicServer demultiplexes datagrams by connection id; we add
outgoing connections to the same table so that the node never opens a second UDP socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Collection, Mapping
from functools import partial
from typing import Any, Protocol, cast

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from google.protobuf.message import DecodeError

from services.common import addresses
from services.common.credentials import Credential
from services.common.logs import event
from services.common.node_identity import NodeIdentity, fingerprint_of
from services.gateway.peers import admission
from services.gateway.peers.admission import AdmissionRefused, LocalNode
from services.gateway.peers.framing import FrameError, StreamKind, stream_kind
from services.gateway.peers.udp import BatchedDatagramTransport, bind_udp

log = logging.getLogger(__name__)

# The peer protocol's version: bumped whenever a stream layout changes (2: HTTP tunnels framed, with
# credit and an end frame), so nodes of different versions refuse each other at the handshake.
ALPN = "mesh-llm/2"


class StreamSink(Protocol):
    """Where a spliced stream's data goes as it arrives (see MeshConnection.splice)."""

    def stream_data(self, data: bytes, end: bool) -> None:
        """Bytes the peer sent on the stream; `end`: it sends no more."""

    def stream_lost(self) -> None:
        """The peer reset the stream or the connection ended: nothing more comes or goes."""


class MeshConnection(QuicConnectionProtocol):
    """One QUIC connection to a peer; no stream but admission is served until it is admitted."""

    def __init__(self, quic: QuicConnection, stream_handler: object = None, *, endpoint: PeerEndpoint, peer_address: str = "") -> None:
        super().__init__(quic, stream_handler=self._on_stream)
        self.endpoint = endpoint
        self.admitted = asyncio.Event()
        self.peer_node_id = ""
        self.peer_credential: Credential | None = None  # what the peer was admitted with (its kind: what it may be told)
        self.peer_address = peer_address  # where the peer listens: the address we connected to, or the one its hello names
        self.closed_reason = ""
        self.timeouts = 0  # consecutive requests on this connection that got no reply in time
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._sinks: dict[int, StreamSink] = {}
        self._held: dict[int, tuple[StreamSink, list[bytes], bool]] = {}  # spliced data of the batch being read

    def _on_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream_id = writer.get_extra_info("stream_id")
        task = asyncio.get_running_loop().create_task(self._serve_stream(reader, writer))
        self._tasks[stream_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(stream_id, None))

    def open_spliced(self, sink: StreamSink) -> int:
        """A new stream whose incoming data goes straight to `sink` (no reader); its id."""
        stream_id = self._quic.get_next_available_stream_id()
        self._sinks[stream_id] = sink
        return stream_id

    def splice(self, stream_id: int, reader: asyncio.StreamReader, sink: StreamSink) -> None:
        """From now on the stream's data goes straight to `sink`, starting with what `reader`
        already holds: for byte tunnels, where a reader and a task per direction cost two
        event-loop turns per hop on a path that runs once per generated token."""
        self._sinks[stream_id] = sink
        # asyncio has no public "take what you hold".
        held, ended = bytes(reader._buffer), reader._eof  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue]
        reader._buffer.clear()  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue]
        if held or ended:
            sink.stream_data(held, ended)

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """Send on a stream now (not on the next loop turn, as stream writers do)."""
        try:
            self._quic.send_stream_data(stream_id, data, end_stream=end)
        except (ValueError, RuntimeError):
            # The stream is already finished or reset on our side: the sink has been told.
            return
        self.transmit()

    def finish(self, stream_id: int, end: bool) -> None:
        """We are done with a spliced stream: end our side (`end`: not ended yet) and ask the peer
        to stop sending on its side (what it still sends is dropped here; its sink is told)."""
        if end:
            self.send(stream_id, b"", end=True)
        with contextlib.suppress(ValueError, AssertionError):  # the peer already ended its side: nothing to stop
            self._quic.stop_stream(stream_id, 0)
        self.transmit()

    def cancel_stream(self, stream_id: int, error_code: int) -> None:
        """Abandon a stream: the peer stops sending and cancels its work on it."""
        try:
            self._quic.reset_stream(stream_id, error_code)
            self._quic.stop_stream(stream_id, error_code)
        except (ValueError, AssertionError):
            # The stream already ended on both sides: nothing left to abandon.
            return
        self.transmit()

    async def _serve_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            kind = stream_kind(await reader.readexactly(1))
            if kind == StreamKind.ADMISSION and not self._quic.configuration.is_client and not self.admitted.is_set():
                await self._admit_client(reader, writer)
            elif kind == StreamKind.PAIRING and not self._quic.configuration.is_client and self.endpoint.pairing is not None:
                await self.endpoint.pairing(self, reader, writer)  # a stranger asking to join: served before admission
            elif not self.admitted.is_set():
                self.refuse(f"{kind.name} stream before admission")
            else:
                await self.endpoint.serve_stream(self, kind, reader, writer)
        except (FrameError, asyncio.IncompleteReadError, ValueError, DecodeError) as bad:
            # A broken peer must not take the node down: drop its connection, keep serving others.
            self.refuse(f"malformed stream: {bad}")
        finally:
            try:
                writer.close()
            except (ValueError, AssertionError, RuntimeError):
                # The peer reset the stream, or a splice already ended our side: nothing to close.
                pass

    async def _admit_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            client = await admission.admit_client(reader, writer, self.endpoint.local(), self.endpoint.identity.fingerprint)
        except AdmissionRefused as refused:
            await asyncio.sleep(0.05)  # let the refusal frame leave before the close
            self.refuse(refused.reason, peer=refused.peer, address=refused.address)
            return
        self.peer_node_id, self.peer_address, self.peer_credential = client.node_id, client.address, client.credential
        self.admitted.set()
        self.endpoint.on_admitted(self)
        event(log, "peer admitted", peer=client.node_id, address=client.address, kind=client.credential.kind)

    async def admit_to_server(self) -> None:
        """Client side: prove we hold a credential and check that the server does too."""
        reader, writer = await self.create_stream()
        fingerprints = (self.endpoint.identity.fingerprint, server_fingerprint(self))
        try:
            server = await admission.admit_to_server(reader, writer, self.endpoint.local(), fingerprints, lambda: self.closed_reason)
        except AdmissionRefused as refused:
            if refused.by_us:
                self.refuse(refused.reason)
            raise
        self.peer_node_id, self.peer_credential = server.node_id, server.credential
        self.admitted.set()
        writer.close()

    def refuse(self, reason: str, **fields: object) -> None:
        event(log, "peer refused", logging.WARNING, reason=reason, **fields)
        self.close(error_code=0x100, reason_phrase=reason[:200])

    # The parameter is not called `event` as aioquic's is: that is our logging function here.
    def quic_event_received(self, quic_event: events.QuicEvent) -> None:  # pyright: ignore[reportIncompatibleMethodOverride]
        if self._to_sink(quic_event):
            return
        if isinstance(quic_event, events.ConnectionTerminated):
            self.closed_reason = quic_event.reason_phrase or f"closed (error {quic_event.error_code})"
            if quic_event.error_code == 0x100 and quic_event.reason_phrase:
                event(log, "refused by peer", logging.WARNING, reason=quic_event.reason_phrase, peer=self.peer_node_id or "?")
            for task in list(self._tasks.values()):
                task.cancel()  # the streams they serve died with the connection: nothing will wake them
            self.endpoint.on_closed(self)
        elif isinstance(quic_event, (events.StreamReset, events.StopSendingReceived)):
            # The peer abandoned a stream it asked us to serve: stop the work behind it.
            task = self._tasks.get(quic_event.stream_id)
            if task is not None:
                task.cancel()
        super().quic_event_received(quic_event)

    def datagram_received(self, data: bytes | str, addr: object) -> None:
        """Read one datagram of a batch (peers/udp.py): what it carries for spliced streams and
        what we owe the peer go out once, when the batch ends (end_batch)."""
        # A UDP endpoint receives bytes (asyncio's str is for other transports).
        self._quic.receive_datagram(cast(bytes, data), addr, now=self._loop.time())
        self._process_events()
        if self.endpoint.batch is None:
            self.end_batch()
        else:
            self.endpoint.batch.add(self)

    def end_batch(self) -> None:
        """Write each spliced stream's data of the batch at once, then send ACKs and answers."""
        self._deliver_held()
        self.transmit()

    def transmit(self) -> None:
        """Send what is due, the datagrams of one call together (peers/udp.py: GSO)."""
        corked = getattr(self._transport, "corked", None)
        if corked is None:
            super().transmit()
        else:
            with corked():
                super().transmit()

    def _deliver_held(self, only: int | None = None) -> None:
        for stream_id in [only] if only is not None else list(self._held):
            if stream_id in self._held:
                sink, chunks, end = self._held.pop(stream_id)
                sink.stream_data(chunks[0] if len(chunks) == 1 else b"".join(chunks), end)

    def _to_sink(self, quic_event: events.QuicEvent) -> bool:
        """Hand a spliced stream's event to its sink; True when the event is consumed."""
        if isinstance(quic_event, events.ConnectionTerminated):
            self._deliver_held()
            lost, self._sinks = list(self._sinks.values()), {}
            for sink in lost:
                sink.stream_lost()
            return False
        if not isinstance(quic_event, (events.StreamDataReceived, events.StreamReset, events.StopSendingReceived)):
            return False
        stream_id = quic_event.stream_id
        sink = self._sinks.get(stream_id)
        if sink is None:
            return False
        if isinstance(quic_event, events.StreamDataReceived):
            if quic_event.end_stream:
                del self._sinks[stream_id]
            held = self._held.get(stream_id)
            if held is not None:
                held[1].append(quic_event.data)
                self._held[stream_id] = (sink, held[1], quic_event.end_stream)
            elif self.endpoint.batch is not None:
                self._held[stream_id] = (sink, [quic_event.data], quic_event.end_stream)
            else:
                sink.stream_data(quic_event.data, quic_event.end_stream)
            return True
        self._deliver_held(stream_id)  # a reset or stop: what arrived first still goes out first
        del self._sinks[stream_id]
        sink.stream_lost()
        return False


def server_fingerprint(connection: MeshConnection) -> str:
    # aioquic keeps the peer's certificate on its TLS context without a public accessor.
    certificate = connection._quic.tls._peer_certificate  # noqa: SLF001
    return fingerprint_of(certificate) if certificate is not None else ""


# Serves one kind of stream a peer opened (its kind byte read) until the stream ends.
StreamHandler = Callable[[MeshConnection, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class PeerEndpoint(QuicServer):
    """The UDP socket plus every connection on it, inbound and outbound."""

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        local: Callable[[], LocalNode],
        handlers: Mapping[StreamKind, StreamHandler],
        idle_timeout: float,
        datagram_bytes: int = 1200,
        pairing: StreamHandler | None = None,
    ) -> None:
        server_configuration = QuicConfiguration(is_client=False, alpn_protocols=[ALPN], idle_timeout=idle_timeout, max_datagram_size=datagram_bytes)
        server_configuration.load_cert_chain(identity.certificate_path, identity.key_path)
        super().__init__(configuration=server_configuration, create_protocol=partial(MeshConnection, endpoint=self))
        # Peers' certificates are self-signed: trust comes from admission, which binds their fingerprint.
        self.client_configuration = QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN],
            idle_timeout=idle_timeout,
            verify_mode=ssl.CERT_NONE,
            server_name="mesh-llm",
            max_datagram_size=datagram_bytes,
        )
        self.client_configuration.load_cert_chain(identity.certificate_path, identity.key_path)
        self.identity = identity
        self.local = local
        self.handlers = handlers
        self.pairing = pairing  # serves PAIRING streams of connections not admitted (None: pairing refused)
        self.connections: set[MeshConnection] = set()
        self.batch: set[MeshConnection] | None = None  # connections that read datagrams of the batch being read

    def datagrams_received(self, batch: list[tuple[bytes, Any]]) -> None:
        """A batch from the socket (peers/udp.py): each connection reads its datagrams, then answers once."""
        self.batch = touched = set()
        try:
            for data, addr in batch:
                self.datagram_received(data, addr)
        finally:
            self.batch = None
            for connection in touched:
                connection.end_batch()

    async def serve_stream(self, connection: MeshConnection, kind: StreamKind, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A stream an admitted peer opened, handed to the handler of its kind."""
        handler = self.handlers.get(kind)
        if handler is None:
            connection.refuse(f"{kind.name} streams are not served")
            return
        await handler(connection, reader, writer)

    async def connect(self, address: str, timeout: float) -> MeshConnection:
        """A new admitted connection to address (host:port) from our one socket, or an exception saying why not."""
        host, port = addresses.split(address)  # IPv6 hosts come in brackets
        quic = QuicConnection(configuration=self.client_configuration)
        protocol = MeshConnection(quic, endpoint=self, peer_address=address)
        assert self._transport is not None  # open_endpoint gave the socket before any connect
        protocol.connection_made(self._transport)
        protocol._connection_id_issued_handler = partial(self._connection_id_issued, protocol=protocol)  # noqa: SLF001
        protocol._connection_id_retired_handler = partial(self._connection_id_retired, protocol=protocol)  # noqa: SLF001
        protocol._connection_terminated_handler = partial(self._connection_terminated, protocol=protocol)  # noqa: SLF001
        self._protocols[quic.host_cid] = protocol
        self.connections.add(protocol)
        try:
            async with asyncio.timeout(timeout):
                protocol.connect((host, port))
                await protocol.wait_connected()
                await protocol.admit_to_server()
        except (TimeoutError, ConnectionError, AdmissionRefused):
            waiter = protocol._connected_waiter  # noqa: SLF001
            if waiter is not None:
                # The handshake we stopped waiting for fails when the close lands; nobody awaits it.
                waiter.add_done_callback(lambda done: done.cancelled() or done.exception())
            protocol.close()
            self.connections.discard(protocol)
            raise
        return protocol

    def drop_revoked(self, revoked: Collection[str]) -> None:
        """Close every connection admitted with a credential revoked since (its node is refused on its next try)."""
        for connection in list(self.connections):
            if connection.peer_credential is not None and connection.peer_credential.credential_id in revoked:
                connection.refuse(f"credential {connection.peer_credential.credential_id} was revoked", peer=connection.peer_node_id)

    def on_admitted(self, connection: MeshConnection) -> None:
        self.connections.add(connection)

    def on_closed(self, connection: MeshConnection) -> None:
        self.connections.discard(connection)
        connection.admitted.clear()

    def close(self) -> None:
        for connection in list(self.connections):
            connection.close(reason_phrase="node stopping")
        super().close()


async def open_endpoint(
    host: str,
    port: int,
    *,
    identity: NodeIdentity,
    local: Callable[[], LocalNode],
    handlers: Mapping[StreamKind, StreamHandler],
    idle_timeout: float,
    datagram_bytes: int = 1200,
    pairing: StreamHandler | None = None,
) -> PeerEndpoint:
    """The endpoint on its socket, bound to host:port (0: any free port), serving `handlers` once peers are admitted."""
    endpoint = PeerEndpoint(identity=identity, local=local, handlers=handlers, idle_timeout=idle_timeout, datagram_bytes=datagram_bytes, pairing=pairing)
    transport = BatchedDatagramTransport(bind_udp(host, port), endpoint)
    event(log, "quic endpoint open", address=f"{host}:{transport.get_extra_info('sockname')[1]}", datagram_bytes=datagram_bytes)
    return endpoint

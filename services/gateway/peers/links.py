"""Links to peers: one admitted connection per peer address, reused for every request.

Owns finding or opening the connection for an address, dropping one that stays silent, and the
request/reply exchange on a stream; connecting and serving streams are endpoint.py's, admission
admission.py's, framing framing.py's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from services.gateway.peers.endpoint import MeshConnection, PeerEndpoint, StreamHandler
from services.gateway.peers.framing import StreamKind, encode_frame, read_frame
from services.gateway.peers.secrecy import withheld

GossipHandler = Callable[[bytes, str], Awaitable[bytes | None]]  # None: no answer (the stream just ends)
ByteCounter = Callable[[str, str, int], None]


class PeerLinks:
    """Requests to peers over the endpoint's connections; `count` adds bytes by stream kind and direction."""

    def __init__(self, endpoint: PeerEndpoint, count: ByteCounter) -> None:
        self.endpoint = endpoint
        self.count = count
        self._connecting: dict[str, asyncio.Task[MeshConnection]] = {}

    async def request(self, address: str, kind: StreamKind, payload: bytes, timeout: float) -> tuple[bytes, str, float]:
        """(reply, peer node id, seconds on the wire) for one message sent to the peer at address."""
        connection = None
        try:
            async with asyncio.timeout(timeout):
                connection = await self.connection_to(address, timeout)
                reader, writer = await connection.create_stream()
                if kind == StreamKind.GOSSIP:
                    payload = withheld(payload, connection.peer_credential)
                started = time.monotonic()
                writer.write(bytes([kind]) + encode_frame(payload))
                writer.write_eof()
                reply = await read_frame(reader)
                rtt = time.monotonic() - started
                if kind == StreamKind.GOSSIP:
                    reply = withheld(reply, connection.peer_credential)
        except TimeoutError:
            self._note_timeout(connection)
            raise
        if connection is not None:
            connection.timeouts = 0
        self.count(kind.name.lower(), "sent", len(payload) + 5)
        self.count(kind.name.lower(), "received", len(reply) + 4)
        return reply, connection.peer_node_id, rtt

    def _note_timeout(self, connection: MeshConnection | None) -> None:
        """Drop a connection after repeated silence: after a partition heals, a fresh handshake
        recovers at once, where the old connection's retransmission timer has backed off for long."""
        if connection is None:
            return
        connection.timeouts += 1
        if connection.timeouts >= 2:
            connection.close(reason_phrase="peer silent")
            self.endpoint.on_closed(connection)

    async def connection_to(self, address: str, timeout: float) -> MeshConnection:
        for connection in self.endpoint.connections:
            if connection.peer_address == address and connection.admitted.is_set():
                return connection
        # One connect per address at a time; concurrent requests share it.
        task = self._connecting.get(address)
        if task is None:
            task = asyncio.create_task(self.endpoint.connect(address, timeout))
            self._connecting[address] = task
            task.add_done_callback(lambda _: self._connect_done(address, task))
        return await asyncio.shield(task)

    def _connect_done(self, address: str, task: asyncio.Task[MeshConnection]) -> None:
        self._connecting.pop(address, None)
        if not task.cancelled():
            # Mark a failure seen: callers still waiting get it raised; when all of them gave up
            # (cancelled through the shield), asyncio would log it as "never retrieved".
            task.exception()


def request_reply(on_message: GossipHandler, count: ByteCounter) -> StreamHandler:
    """A handler for one-frame request, one-frame reply streams (gossip)."""

    async def serve(connection: MeshConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        payload = await read_frame(reader)
        count("gossip", "received", len(payload) + 5)
        reply = await on_message(withheld(payload, connection.peer_credential), connection.peer_node_id)
        if reply is None:
            return  # the peer sees the stream end without a reply: unavailable, it retries or suspects
        reply = withheld(reply, connection.peer_credential)
        writer.write(encode_frame(reply))
        count("gossip", "sent", len(reply) + 4)

    return serve

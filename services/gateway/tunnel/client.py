"""The sending end of an HTTP tunnel: a request to a peer's gateway on one QUIC stream.

Stream layout (after the kind byte): one frame with the request head (JSON), the body bytes,
end of stream. The reply: one frame with the response head, then body bytes as they come.
Closing early resets the stream, which makes the far end stop generating (the slot is freed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from services.gateway.peers.endpoint import MeshConnection, read_frame
from services.gateway.peers.framing import FrameError, StreamKind, encode_frame
from services.gateway.peers.links import ByteCounter, PeerLinks
from services.gateway.upstream import UpstreamResponse, UpstreamUnavailable

CHUNK_BYTES = 65536
CANCELLED = 0x10C  # application error code on a reset stream: the requester went away


class TunnelUpstream:
    def __init__(self, links: PeerLinks, count: ByteCounter, connect_timeout: float) -> None:
        self.links = links
        self.count = count
        self.connect_timeout = connect_timeout

    async def open(self, address: str, path: str, model_id: str, raw: bytes, request_id: str) -> UpstreamResponse:
        try:
            connection = await self.links.connection_to(address, self.connect_timeout)
            reader, writer = await connection.create_stream()
        except (TimeoutError, ConnectionError, OSError) as failure:
            raise UpstreamUnavailable(f"peer {address} unreachable ({type(failure).__name__})") from None
        head = json.dumps({"path": path, "model": model_id, "request_id": request_id}).encode()
        writer.write(bytes([StreamKind.HTTP]) + encode_frame(head) + raw)
        writer.write_eof()
        self.count("http", "sent", len(raw) + len(head) + 5)
        stream_id = writer.get_extra_info("stream_id")
        try:
            reply = json.loads(await read_frame(reader))
        except (asyncio.IncompleteReadError, FrameError, ValueError):
            raise UpstreamUnavailable(f"peer {address} closed the tunnel before answering: {connection.closed_reason or 'no reason'}") from None
        finished = asyncio.Event()
        return UpstreamResponse(int(reply["status"]), reply.get("content_type", "application/json"),
                                self._body(reader, finished), lambda: self._close(connection, stream_id, finished))

    async def _body(self, reader: asyncio.StreamReader, finished: asyncio.Event) -> AsyncIterator[bytes]:
        received = 0
        try:
            while chunk := await reader.read(CHUNK_BYTES):
                received += len(chunk)
                yield chunk
            if not reader.at_eof():
                raise ConnectionError("tunnel closed mid-response")
            finished.set()
        finally:
            self.count("http", "received", received)

    async def _close(self, connection: MeshConnection, stream_id: int, finished: asyncio.Event) -> None:
        if not finished.is_set():
            connection.cancel_stream(stream_id, CANCELLED)

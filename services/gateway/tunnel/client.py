"""The sending end of an HTTP tunnel: a request to a peer's gateway on one QUIC stream.

Stream layout (after the kind byte), requester to server: one frame with the request head
(JSON, naming the body's length), the body bytes, then credits (credit.py) as our consumer takes
the response; our side ends once the response has. Server to requester: one frame with the
response head, body frames, then an empty frame: the response ended as its server ended it.

The empty frame is what tells a finished answer from a dead peer: when a connection ends,
aioquic hands every stream reader a clean end of stream, so without it a node killed mid-answer
would look like a short answer. A body that stops without it raises ResponseCut.

Closing early resets the stream, which makes the far end stop generating (the slot is freed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from services.gateway.peers.admission import AdmissionRefused
from services.gateway.peers.endpoint import MeshConnection
from services.gateway.peers.framing import HEADER_BYTES, FrameError, StreamKind, encode_frame, frame_length, json_head, read_frame
from services.gateway.peers.links import ByteCounter, PeerLinks
from services.gateway.tunnel.credit import CREDIT_STEP, Credits, encode_credit
from services.gateway.upstream import ResponseCut, UpstreamResponse, UpstreamUnavailable

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
        except AdmissionRefused as refused:
            raise UpstreamUnavailable(f"peer {address} refused us: {refused.reason}") from None
        head = json.dumps({"path": path, "model": model_id, "request_id": request_id, "body_bytes": len(raw)}).encode()
        writer.write(bytes([StreamKind.HTTP]) + encode_frame(head) + raw)
        self.count("http", "sent", len(raw) + len(head) + 5)
        stream_id = writer.get_extra_info("stream_id")
        try:
            reply = json_head(await read_frame(reader))
        except (asyncio.IncompleteReadError, FrameError):
            raise UpstreamUnavailable(f"peer {address} closed the tunnel before answering: {connection.closed_reason or 'no reason'}") from None
        status, content_type = reply.get("status"), reply.get("content_type", "application/json")
        if not isinstance(status, int) or not 100 <= status <= 599 or not isinstance(content_type, str):
            connection.cancel_stream(stream_id, CANCELLED)
            raise UpstreamUnavailable(f"peer {address} answered a malformed response head")
        finished = asyncio.Event()
        return UpstreamResponse(
            status,
            content_type,
            self._body(connection, reader, writer, finished),
            lambda: self._close(connection, writer, stream_id, finished),
        )

    async def _body(
        self, connection: MeshConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, finished: asyncio.Event
    ) -> AsyncIterator[bytes]:
        received = 0
        credits = Credits(CREDIT_STEP)
        try:
            while size := frame_length(await reader.readexactly(HEADER_BYTES)):
                chunk = await reader.readexactly(size)
                received += size
                yield chunk
                # Our consumer came back for more: the chunk has left us, the server may send another.
                if grant := credits.taken(size):
                    writer.write(encode_credit(grant))
            finished.set()
        except asyncio.IncompleteReadError:
            # A closed connection names its reason; otherwise the serving gateway ended the stream
            # short, which it does only when its llama-server stopped mid-response.
            why = connection.closed_reason or "the serving node's llama-server stopped mid-response"
            raise ResponseCut(f"tunnel cut mid-response: {why}") from None
        except FrameError as bad:
            raise ResponseCut(f"tunnel broken mid-response: {bad}") from None
        finally:
            self.count("http", "received", received)

    async def _close(self, connection: MeshConnection, writer: asyncio.StreamWriter, stream_id: int, finished: asyncio.Event) -> None:
        # Our side ends either way: with the answer's end, both sides have ended and aioquic forgets
        # the stream; and a writer left open would try to end it again when collected, after a reset.
        writer.close()
        if not finished.is_set():
            connection.cancel_stream(stream_id, CANCELLED)

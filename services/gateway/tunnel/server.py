"""The receiving end of an HTTP tunnel: a peer's request served by this node's llama-server.

Only local servers answer here (no second hop). The response head goes first, then body frames
as llama-server produces them, then the empty frame that says the response ended as
llama-server ended it (client.py has the stream layout). A body llama-server cut short gets no
end frame: the requester must see a cut, not a short answer.

At most a window of the body is outstanding (credit.py says why QUIC's own flow control does not
bound it): past it we stop reading from llama-server until the requester grants more, so a client
that stops reading holds generation back instead of filling this node's memory. If the
requester resets the stream, the task serving it is cancelled, which closes the upstream request
and frees the llama-server slot.
"""

from __future__ import annotations

import asyncio
import json
import logging

from services.common.logs import event
from services.gateway.peers.endpoint import MeshConnection
from services.gateway.peers.framing import encode_frame, json_head, read_frame
from services.gateway.peers.links import ByteCounter
from services.gateway.tunnel.credit import CHUNK_BYTES, CREDIT_FRAME_BYTES, CREDIT_WAIT_SECONDS, WINDOW_BYTES, Window, decode_credit
from services.gateway.upstream import LocalUpstream, ResponseCut, UpstreamResponse, UpstreamUnavailable

log = logging.getLogger(__name__)
END = encode_frame(b"")


def api_path(path: object) -> bool:
    """Whether a peer may ask for `path` on our llama-server: the URL is built from it, so only an
    API path (/v1/...) without dot segments passes: no other host, no other llama-server endpoint."""
    return isinstance(path, str) and path.startswith("/v1/") and not {".", ".."} & set(path.split("?")[0].split("/"))


class TunnelServer:
    def __init__(self, local_port_of, local: LocalUpstream, count: ByteCounter) -> None:
        # local_port_of(model_id) -> (port, or an error status and message when not ready here)
        self.local_port_of = local_port_of
        self.local = local
        self.count = count

    async def serve(self, connection: MeshConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = json_head(await read_frame(reader))
        if not isinstance(head.get("body_bytes"), int) or not isinstance(head.get("model"), str) or not isinstance(head.get("request_id", "-"), str):
            raise ValueError("malformed HTTP tunnel head")  # endpoint.py drops the peer's connection
        if not api_path(head.get("path")):
            raise ValueError(f"HTTP tunnel to {head.get('path')!r}: not an API path")
        raw = await reader.readexactly(head["body_bytes"])
        self.count("http", "received", len(raw))
        port, status, message = self.local_port_of(head["model"])
        if not port:
            self._answer(writer, status, json.dumps({"error": {"message": message, "type": "server_error", "code": "model_not_ready"}}).encode())
            return
        try:
            upstream = await self.local.open(port, head["path"], raw, head.get("request_id", "-"))
        except UpstreamUnavailable as failure:
            self._answer(writer, 503, json.dumps({"error": {"message": str(failure), "type": "server_error", "code": "model_not_ready"}}).encode())
            return
        window = Window(WINDOW_BYTES)
        try:
            writer.write(encode_frame(json.dumps({"status": upstream.status, "content_type": upstream.content_type}).encode()))
            await self._relay(upstream, reader, writer, window)
            writer.write(END)
        except ResponseCut as cut:
            # No end frame: the stream ends short (writer.close, endpoint.py), and the requester reports the cut.
            event(log, "tunnel response cut", logging.WARNING, model=head["model"], request_id=head.get("request_id", "-"), reason=str(cut))
        except asyncio.IncompleteReadError:
            # The requester ended its side without taking the whole answer: nobody is left to send to.
            pass
        except TimeoutError:
            # No grant for CREDIT_WAIT_SECONDS: the requester is gone without a word; free the slot.
            event(log, "tunnel abandoned", logging.WARNING, model=head["model"], request_id=head.get("request_id", "-"))
        finally:
            await upstream.close()
            self.count("http", "sent", window.sent)

    async def _relay(self, upstream: UpstreamResponse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: Window) -> None:
        """Body frames as llama-server writes them, never more than the window ahead of the requester."""
        async for chunk in upstream.chunks:
            for start in range(0, len(chunk), CHUNK_BYTES):
                while window.full():
                    # Not reading upstream meanwhile is the point: llama-server's socket fills, then it waits.
                    async with asyncio.timeout(CREDIT_WAIT_SECONDS):
                        window.granted += decode_credit(await reader.readexactly(CREDIT_FRAME_BYTES))
                piece = chunk[start : start + CHUNK_BYTES]
                writer.write(encode_frame(piece))
                window.sent += len(piece)

    def _answer(self, writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(encode_frame(json.dumps({"status": status, "content_type": "application/json"}).encode()) + encode_frame(body) + END)
        self.count("http", "sent", len(body))

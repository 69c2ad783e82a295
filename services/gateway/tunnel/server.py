"""The receiving end of an HTTP tunnel: a peer's request served by this node's llama-server.

Only local servers answer here (no second hop). The response head goes first, then body bytes
as llama-server produces them; if the requester resets the stream, the task serving it is
cancelled, which closes the upstream request and frees the llama-server slot.
"""

from __future__ import annotations

import asyncio
import json

from services.gateway.peers.endpoint import MeshConnection, read_frame
from services.gateway.peers.framing import encode_frame
from services.gateway.peers.links import ByteCounter
from services.gateway.upstream import LocalUpstream, UpstreamUnavailable


class TunnelServer:
    def __init__(self, local_port_of, local: LocalUpstream, count: ByteCounter) -> None:
        # local_port_of(model_id) -> (port, or an error status and message when not ready here)
        self.local_port_of = local_port_of
        self.local = local
        self.count = count

    async def serve(self, connection: MeshConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = json.loads(await read_frame(reader))
        raw = await reader.read()
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
        sent = 0
        try:
            writer.write(encode_frame(json.dumps({"status": upstream.status, "content_type": upstream.content_type}).encode()))
            async for chunk in upstream.chunks:
                writer.write(chunk)
                sent += len(chunk)
        finally:
            await upstream.close()
            self.count("http", "sent", sent)

    def _answer(self, writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(encode_frame(json.dumps({"status": status, "content_type": "application/json"}).encode()) + body)
        self.count("http", "sent", len(body))

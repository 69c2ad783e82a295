"""Where a relayed request's response comes from: the local llama-server over HTTP, or a peer's
gateway through an HTTP tunnel on QUIC. Both give the same UpstreamResponse.

Owns opening and closing upstream responses, and the two ways one fails: before its first byte
(UpstreamUnavailable: another server may be tried) and after it (ResponseCut: the body stopped
before its server ended it). Whatever the transport, a body either ends as its server ended it or
raises ResponseCut: a dead peer or a killed llama-server never looks like a finished answer.
Routing and metrics are the relay's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx


class UpstreamUnavailable(Exception):
    """The upstream failed before sending its first response byte: safe to try another server."""


class ResponseCut(ConnectionError):
    """The response body stopped before its server ended it (a killed server, a lost peer)."""


@dataclass
class UpstreamResponse:
    status: int
    content_type: str
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]


class LocalUpstream:
    """llama-server on this node, over HTTP on loopback."""

    def __init__(self, connect_timeout: float) -> None:
        # No read timeout: a long generation is not an error; connect failures are.
        timeout = httpx.Timeout(None, connect=connect_timeout)
        self.client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))

    async def open(self, port: int, path: str, raw: bytes, request_id: str) -> UpstreamResponse:
        request = self.client.build_request(
            "POST", f"http://127.0.0.1:{port}{path}", content=raw, headers={"content-type": "application/json", "x-request-id": request_id}
        )
        try:
            response = await self._send(request)
        except httpx.TransportError as failure:
            raise UpstreamUnavailable(f"llama-server is not answering ({type(failure).__name__})") from None
        return UpstreamResponse(response.status_code, response.headers.get("content-type", "application/json"), _whole(response.aiter_raw()), response.aclose)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send, retrying once when a kept-alive connection turns out closed before any response.

        llama-server (cpp-httplib) sometimes closes a kept-alive connection right after a streamed
        response; the next request on it then fails unread, so sending it again is safe.
        """
        try:
            return await self.client.send(request, stream=True)
        except httpx.RemoteProtocolError:
            return await self.client.send(request, stream=True)

    async def close(self) -> None:
        await self.client.aclose()


async def _whole(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The body as llama-server sends it; a connection lost before its end raises ResponseCut.

    httpx knows the end (chunked encoding's last chunk, or the content length) and raises when the
    connection closes before it."""
    try:
        async for chunk in chunks:
            yield chunk
    except httpx.HTTPError as failure:
        raise ResponseCut(f"llama-server stopped mid-response ({type(failure).__name__})") from None

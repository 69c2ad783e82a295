"""Relaying an OpenAI request to the llama-server that serves its model, streaming chunk by chunk.

Owns the upstream HTTP client and per-request metrics; the choice of server is routing.py's.
The request path stays lean: the body is forwarded as received, chunks are passed on as they
arrive, and usage is read once from the response's end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import httpx
from starlette.responses import Response, StreamingResponse

from services.common.logs import event, request_id
from services.gateway import routing
from services.gateway.errors import ModelNotFound, NoServer
from services.gateway.metrics import GatewayMetrics
from services.gateway.mesh_view import MeshMirror
from services.gateway.openai.usage import usage_of_response, usage_of_stream_tail
from services.gateway.settings import GatewaySettings

TAIL_BYTES = 8192

log = logging.getLogger(__name__)


class Relay:
    def __init__(self, settings: GatewaySettings, mirror: MeshMirror, metrics: GatewayMetrics) -> None:
        self.mirror = mirror
        self.metrics = metrics
        # No read timeout: a long generation is not an error; connect failures are.
        timeout = httpx.Timeout(None, connect=settings.connect_timeout)
        self.client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))

    async def close(self) -> None:
        await self.client.aclose()

    def target(self, model: str) -> routing.Target:
        decision = routing.route(self.mirror.view, model, time.time())
        if isinstance(decision, routing.UnknownModel):
            served = ", ".join(decision.served) or "none"
            raise ModelNotFound(f"model '{model}' is not served by this mesh; served models: {served}")
        if isinstance(decision, routing.NotReady):
            raise NoServer(f"model '{decision.model_id}' has no ready server (it is {decision.state}); retry shortly", decision.retry_after)
        return decision

    async def forward(self, endpoint: str, model: str, stream: bool, raw: bytes) -> Response:
        started = time.perf_counter()
        target = self.target(model)
        request = self.client.build_request(
            "POST", f"http://127.0.0.1:{target.port}{endpoint}", content=raw,
            headers={"content-type": "application/json", "x-request-id": request_id.get()},
        )
        try:
            upstream = await self._send(request)
        except httpx.TransportError:
            self.metrics.requests.labels(target.model_id, endpoint, "503").inc()
            raise NoServer(f"model '{target.model_id}' server is not answering; retry shortly", 1) from None
        self.metrics.requests.labels(target.model_id, endpoint, str(upstream.status_code)).inc()
        headers = {"x-request-id": request_id.get()}
        if stream and upstream.status_code == 200:
            return StreamingResponse(self._chunks(upstream, target, started), media_type="text/event-stream",
                                     headers=headers | {"cache-control": "no-cache"})
        body = await _read_all(upstream)
        self.metrics.time_to_first_token.labels(target.model_id).observe(time.perf_counter() - started)
        self._count(target, upstream.status_code, usage_of_response(body), started)
        return Response(body, status_code=upstream.status_code, media_type=upstream.headers.get("content-type"), headers=headers)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send, retrying once when a kept-alive connection turns out closed before any response.

        llama-server (cpp-httplib) sometimes closes a kept-alive connection right after a streamed
        response; the next request on it then fails unread, so sending it again is safe.
        """
        try:
            return await self.client.send(request, stream=True)
        except httpx.RemoteProtocolError:
            return await self.client.send(request, stream=True)

    async def _chunks(self, upstream: httpx.Response, target: routing.Target, started: float) -> AsyncIterator[bytes]:
        tail = b""
        try:
            async for chunk in upstream.aiter_raw():
                if not tail:
                    self.metrics.time_to_first_token.labels(target.model_id).observe(time.perf_counter() - started)
                tail = (tail + chunk)[-TAIL_BYTES:]
                yield chunk
        finally:
            # Also on client disconnect: closing upstream makes llama-server free the slot.
            await upstream.aclose()
            self._count(target, upstream.status_code, usage_of_stream_tail(tail), started)

    def _count(self, target: routing.Target, status: int, usage: tuple[int, int], started: float) -> None:
        prompt, completion = usage
        elapsed = time.perf_counter() - started
        self.metrics.prompt_tokens.labels(target.model_id).inc(prompt)
        self.metrics.completion_tokens.labels(target.model_id).inc(completion)
        self.metrics.request_duration.labels(target.model_id).observe(elapsed)
        event(log, "request done", model=target.model_id, node=target.node_id, status=status,
              prompt_tokens=prompt, completion_tokens=completion, ms=round(elapsed * 1000))


async def _read_all(upstream: httpx.Response) -> bytes:
    try:
        return await upstream.aread()
    finally:
        await upstream.aclose()

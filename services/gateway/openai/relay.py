"""Relaying an OpenAI request to a server of its model, here or on a peer, streaming chunk by chunk.

Owns trying targets in routing's order (one retry when a target fails before its first byte),
the gateway's in-flight counts, and per-request metrics. The request path stays lean: the body is
forwarded as received, chunks are passed on as they arrive, usage is read once at the end.

A response that fails after its first byte is never passed off as an answer: a stream cut short
(ResponseCut from the upstream, or an end that is not the API's own end: `data: [DONE]` for
OpenAI chat) ends with the API's error event (sse.py for OpenAI's), a cut non-streamed body becomes
a 503 error, and both are logged as "request failed" and counted in the errors metric (reason "cut").

Every API shape llama-server serves natively (OpenAI chat and completions, the Responses API,
Anthropic messages) is relayed the same way; a Dialect says what differs between them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from services.common.logs import event, request_id
from services.gateway import routing
from services.gateway.errors import ModelNotFound, NoServer
from services.gateway.metrics import GatewayMetrics
from services.gateway.mirror import MeshMirror
from services.gateway.openai import sse
from services.gateway.openai.usage import usage_of_response, usage_of_stream_tail
from services.gateway.tunnel.client import TunnelUpstream
from services.gateway.upstream import LocalUpstream, ResponseCut, UpstreamResponse, UpstreamUnavailable

TAIL_BYTES = 8192
ATTEMPTS = 2  # the first target, then one other if the first fails before its first byte

log = logging.getLogger(__name__)
Release = Callable[..., Awaitable[None]]


def _as_is(status: int, body: bytes) -> bytes:
    return body


@dataclass(frozen=True)
class Dialect:
    """What differs between the API shapes relayed as llama-server writes them."""

    reached_its_end: Callable[[bytes], bool] = sse.reached_its_end  # the stream's last bytes -> it ended as the API ends one
    cut_stream_end: Callable[[str], bytes] = sse.cut_stream_end  # a message -> the events that end a stream cut short
    error_body: Callable[[int, bytes], bytes] = _as_is  # an upstream error (status, body) -> the body in the API's error shape
    last_event: str = "data: [DONE]"  # how the log names a stream's missing end


OPENAI = Dialect()


class Relay:
    def __init__(
        self,
        mirror: MeshMirror,
        metrics: GatewayMetrics,
        local: LocalUpstream,
        tunnel: TunnelUpstream | None,
        demand: Callable[[str], None] = lambda model: None,
    ) -> None:
        self.mirror = mirror
        self.demand = demand
        self.metrics = metrics
        self.local = local
        self.tunnel = tunnel
        self.in_flight: Counter[str] = Counter()

    def targets(self, model: str, affinity: str, exclude: frozenset[str]) -> list[routing.Target]:
        decision = routing.route(self.mirror.view, model, time.time(), affinity, self.in_flight, exclude)
        if isinstance(decision, routing.UnknownModel):
            served = ", ".join(decision.served) or "none"
            known = routing.resolve_name(model, routing.known_models(self.mirror.view))
            if isinstance(known, str):
                # Known but unserved: the request counts as demand, and a standby node holding it may start it.
                raise NoServer(
                    f"model '{known}' is not served by this mesh right now (served models: {served}); the request was counted as demand for it: retry shortly",
                    5,
                )
            which = f" ('{model}' could mean {', '.join(decision.ambiguous)})" if decision.ambiguous else ""
            raise ModelNotFound(f"model '{model}' is not served by this mesh{which}; served models: {served}")
        if isinstance(decision, routing.NotReady):
            raise NoServer(f"model '{decision.model_id}' has no ready server (it is {decision.state}); retry shortly", decision.retry_after)
        return decision

    async def forward(self, endpoint: str, model: str, stream: bool, raw: bytes, affinity: str = "", dialect: Dialect = OPENAI) -> Response:
        started = time.perf_counter()
        self.demand(routing.demand_name(self.mirror.view, model))
        tried: set[str] = set()
        for _ in range(ATTEMPTS):
            target = self.targets(model, affinity, frozenset(tried))[0]
            tried.add(target.node_id)
            # Counted from the choice on (a non-streamed answer's headers come only at its end),
            # so that concurrent requests see each other's load.
            self.in_flight[target.node_id] += 1
            try:
                upstream = await self._open(target, endpoint, raw)
            except UpstreamUnavailable as failure:
                self.in_flight[target.node_id] -= 1
                self._failed(target, endpoint, "unavailable", str(failure))
                continue
            if upstream.status == 503:
                # The far side had no ready server after all: as good as failing before the first byte.
                self.in_flight[target.node_id] -= 1
                await upstream.close()
                self._failed(target, endpoint, "not_ready", "503 from the target")
                continue
            return await self._respond(target, endpoint, stream, upstream, started, dialect)
        raise NoServer(f"model '{model}': its servers failed before answering ({', '.join(sorted(tried))}); retry shortly", 1)

    async def _open(self, target: routing.Target, endpoint: str, raw: bytes) -> UpstreamResponse:
        if target.local:
            return await self.local.open(target.port, endpoint, raw, request_id.get())
        if self.tunnel is None:
            raise UpstreamUnavailable("this gateway has no tunnel to peers")
        return await self.tunnel.open(target.address, endpoint, target.model_id, raw, request_id.get())

    def _failed(self, target: routing.Target, endpoint: str, reason: str, detail: str) -> None:
        self.metrics.errors.labels(target.model_id, target.node_id, reason).inc()
        event(log, "target failed", logging.WARNING, model=target.model_id, node=target.node_id, endpoint=endpoint, reason=detail)

    async def _respond(self, target: routing.Target, endpoint: str, stream: bool, upstream: UpstreamResponse, started: float, dialect: Dialect) -> Response:
        headers = {"x-request-id": request_id.get(), "x-mesh-node": target.node_id}
        if stream and upstream.status == 200:
            self.metrics.requests.labels(target.model_id, target.node_id, endpoint, "200").inc()
            release = self._releaser(upstream, target, endpoint, started)
            return RelayedStream(
                self._chunks(upstream, target, started, release, dialect),
                release,
                media_type="text/event-stream",
                headers=headers | {"cache-control": "no-cache"},
            )
        try:
            body = b"".join([chunk async for chunk in upstream.chunks])
        except ResponseCut as cut:
            # A partial body is not an answer: the client gets an error, never a 200 with half a JSON.
            self.metrics.requests.labels(target.model_id, target.node_id, endpoint, str(NoServer.status)).inc()
            self._finished(target, endpoint, (0, 0), started, failure=str(cut))
            raise NoServer(f"model '{target.model_id}': its server failed while answering ({cut}); retry", 1) from None
        finally:
            await upstream.close()
            self.in_flight[target.node_id] -= 1
        self.metrics.requests.labels(target.model_id, target.node_id, endpoint, str(upstream.status)).inc()
        self.metrics.time_to_first_token.labels(target.model_id, target.node_id).observe(time.perf_counter() - started)
        self._finished(target, endpoint, usage_of_response(body), started, status=upstream.status)
        if upstream.status >= 400:
            body = dialect.error_body(upstream.status, body)
        return Response(body, status_code=upstream.status, media_type=upstream.content_type, headers=headers)

    def _releaser(self, upstream: UpstreamResponse, target: routing.Target, endpoint: str, started: float) -> Release:
        """Letting go of a streamed answer, once, whoever gets there first: the stream's end, or the
        response when the client left before the stream began. Counts come before the await: a
        cancelled close must not skip them."""
        done = False

        async def release(usage: tuple[int, int] = (0, 0), failure: str | None = None, client_left: bool = True) -> None:
            nonlocal done
            if done:
                return
            done = True
            self.in_flight[target.node_id] -= 1
            self._finished(target, endpoint, usage, started, status=200, failure=failure, client_left=client_left)
            # Closing upstream makes llama-server (here or on the peer) free the slot.
            await upstream.close()

        return release

    async def _chunks(self, upstream: UpstreamResponse, target: routing.Target, started: float, release: Release, dialect: Dialect) -> AsyncIterator[bytes]:
        tail = held = b""
        inter_token = self.metrics.inter_token.labels(target.model_id)
        last = 0.0
        ended, failure = False, None  # not ended when we leave: the client went away
        try:
            async for chunk in upstream.chunks:
                now = time.perf_counter()
                if not last:
                    self.metrics.time_to_first_token.labels(target.model_id, target.node_id).observe(now - started)
                else:
                    inter_token.observe(now - last)
                last = now
                events, held = sse.whole_events(held, chunk)
                if events:
                    tail = (tail + events)[-TAIL_BYTES:]
                    yield events
            ended = True
            if not dialect.reached_its_end(tail + held):
                failure = f"the stream ended without {dialect.last_event}"
            elif held:
                yield held  # the last event, short of its blank line
        except ResponseCut as cut:
            ended, failure = True, str(cut)
        finally:
            await release(usage_of_stream_tail(tail), failure, client_left=not ended)
        if failure is not None:
            # After the first byte there is no retry: the stream says it failed, then ends as clients expect.
            yield dialect.cut_stream_end(f"the server of '{target.model_id}' failed mid-stream: {failure}")

    def _finished(
        self,
        target: routing.Target,
        endpoint: str,
        usage: tuple[int, int],
        started: float,
        status: int = 0,
        failure: str | None = None,
        client_left: bool = False,
    ) -> None:
        """Metrics and the one log line of a request that got a response; a failure counts as an error."""
        prompt, completion = usage
        elapsed = time.perf_counter() - started
        self.metrics.prompt_tokens.labels(target.model_id).inc(prompt)
        self.metrics.completion_tokens.labels(target.model_id).inc(completion)
        self.metrics.request_duration.labels(target.model_id).observe(elapsed)
        fields = {
            "model": target.model_id,
            "node": target.node_id,
            "endpoint": endpoint,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "ms": round(elapsed * 1000),
        }
        if failure is not None:
            self.metrics.errors.labels(target.model_id, target.node_id, "cut").inc()
            event(log, "request failed", logging.WARNING, reason=failure, **fields)
            return
        if completion > 1 and elapsed > 0:
            self.metrics.tokens_per_second.labels(target.model_id).observe(completion / elapsed)
        event(log, "request done", status=status, **fields, **({"client_left": True} if client_left else {}))


class RelayedStream(StreamingResponse):
    """A streamed answer that always lets go of its upstream. Starlette never starts the body
    iterator when the client leaves before the first chunk, so the iterator's own `finally` cannot
    be the only place: without this, the upstream stayed open (and a peer serving it waited on
    credit that never came, with its llama-server slot held)."""

    def __init__(self, content: AsyncIterator[bytes], release: Release, media_type: str, headers: Mapping[str, str]) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.release()

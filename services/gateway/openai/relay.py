"""Relaying an OpenAI request to a server of its model, here or on a peer, streaming chunk by chunk.

Owns trying targets in routing's order (one retry when a target fails before its first byte),
taking an answer over when its server fails after its first byte, the gateway's in-flight
counts, and per-request metrics. The request path stays lean: the body is forwarded as received,
chunks are passed on as they arrive, usage is read once at the end; a stream that may be taken
over keeps its raw events, and they are read only when a takeover needs them.

A server that fails mid-answer does not end the answer. A cut streamed answer (ResponseCut from
the upstream, or an end that is not the API's own end: `data: [DONE]` for OpenAI chat) is
continued on another ready server of its model, as one stream (takeover.py; what the
continuation asks and how its events are rewritten is the API's Resume, continuation.py); a cut
non-streamed answer is asked again of another server. Where no takeover is possible (no other
server within the wait, the bound of takeovers reached, an answer that cannot be continued), the
answer is never passed off as whole: a stream ends with the API's error event (sse.py for
OpenAI's), a body becomes a 503 error, and both are logged as "request failed" and counted in the
errors metric (reason "cut").

Every API shape llama-server serves natively (OpenAI chat and completions, the Responses API,
Anthropic messages) is relayed the same way; a Dialect says what differs between them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Set
from dataclasses import dataclass

import anyio
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from services.common import clock
from services.common.logs import event, request_id
from services.gateway import routing
from services.gateway.admission import Admission, InFlight
from services.gateway.errors import ModelNotFound, NoServer
from services.gateway.metrics import GatewayMetrics
from services.gateway.mirror import MeshMirror
from services.gateway.openai import sse
from services.gateway.openai.continuation import Resume
from services.gateway.openai.takeover import DEFAULT_POLICY, Leg, StreamedAnswer, TakeoverPolicy
from services.gateway.openai.usage import usage_of_response
from services.gateway.tunnel.client import TunnelUpstream
from services.gateway.upstream import LocalUpstream, ResponseCut, UpstreamResponse, UpstreamUnavailable

TAIL_BYTES = 8192
# The first target, then up to two others while each fails before its first byte: a mesh that just
# lost a node may still list it (until gossip declares it dead) beside a server failing at that
# moment (a split whose worker died with it) and one that answers (CI: two were not enough).
ATTEMPTS = 3

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
    resume: Resume | None = None  # how a stream cut mid-answer is continued on another server; None: it is not


OPENAI = Dialect()


@dataclass(frozen=True)
class Asked:
    """A request as the relay forwards it (and continues it, in a takeover)."""

    endpoint: str
    model: str  # as the client named it
    raw: bytes  # the body as received
    affinity: str = ""


class Relay:
    def __init__(
        self,
        mirror: MeshMirror,
        metrics: GatewayMetrics,
        local: LocalUpstream,
        tunnel: TunnelUpstream | None,
        demand: Callable[[str], None] = lambda model: None,
        takeover: TakeoverPolicy = DEFAULT_POLICY,
        queue: int = 64,
        queue_wait: float = 15.0,
    ) -> None:
        self.mirror = mirror
        self.demand = demand
        self.metrics = metrics
        self.local = local
        self.tunnel = tunnel
        self.takeover = takeover
        self.in_flight = InFlight()
        # At most 2 x slots requests per server from this gateway; the rest wait (bounded) or get 503 (admission.py).
        self.admission = Admission(self.in_flight, queue=queue, wait=queue_wait)

    def targets(self, model: str, affinity: str, exclude: frozenset[str]) -> list[routing.Target]:
        decision = routing.route(self.mirror.view, model, clock.now(), affinity, self.in_flight, exclude)
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

    def ready_targets(self, model: str, affinity: str, dead: Set[tuple[str, int]]) -> list[routing.Target]:
        """Ready servers of the model, best first, but for those that failed this answer ((node, port):
        a llama-server restarted on the same node is another server); [] while there are none."""
        decision = routing.route(self.mirror.view, model, clock.now(), affinity, self.in_flight)
        return [target for target in decision if (target.node_id, target.port) not in dead] if isinstance(decision, list) else []

    async def forward(self, endpoint: str, model: str, stream: bool, raw: bytes, affinity: str = "", dialect: Dialect = OPENAI) -> Response:
        started = time.perf_counter()
        self.demand(routing.demand_name(self.mirror.view, model))
        asked = Asked(endpoint, model, raw, affinity)
        tried: set[str] = set()  # nodes that failed before answering
        dead: set[tuple[str, int]] = set()  # (node, port) of servers that failed while answering
        for retry in range(self.takeover.limit + 1):
            target, upstream = await self._answering(asked, tried, dead)
            if stream and upstream.status == 200:
                self.metrics.requests.labels(target.model_id, target.node_id, endpoint, "200").inc()
                answer = StreamedAnswer(self, asked, Leg(target, upstream), started, dialect)
                headers = {"x-request-id": request_id.get(), "x-mesh-node": target.node_id, "cache-control": "no-cache"}
                return RelayedStream(answer.chunks(), answer.release, media_type="text/event-stream", headers=headers)
            try:
                return await self._whole(target, endpoint, upstream, started, dialect)
            except ResponseCut as cut:
                # The client has nothing yet: the whole request goes to another server, if there is one.
                self.target_failed(target, endpoint, "cut", str(cut))
                dead.add((target.node_id, target.port))
                if retry == self.takeover.limit or not self._candidates(asked, tried, dead):
                    self.metrics.requests.labels(target.model_id, target.node_id, endpoint, str(NoServer.status)).inc()
                    self.metrics.takeovers.labels(target.model_id, "failed").inc()
                    self.finished(target, endpoint, (0, 0), started, failure=str(cut))
                    raise NoServer(f"model '{target.model_id}': its server failed while answering ({cut}); retry", 1) from None
                self.metrics.takeovers.labels(target.model_id, "retried").inc()
                event(log, "takeover", logging.WARNING, model=target.model_id, failed=target.node_id, endpoint=endpoint, streamed=False, reason=str(cut))
        raise AssertionError("unreachable: the last retry returns or raises")

    def _candidates(self, asked: Asked, tried: set[str], dead: Set[tuple[str, int]]) -> list[routing.Target]:
        """Ready servers of the model, best first, on nodes not tried and not dead themselves."""
        return [target for target in self.ready_targets(asked.model, asked.affinity, dead) if target.node_id not in tried]

    async def _answering(self, asked: Asked, tried: set[str], dead: Set[tuple[str, int]]) -> tuple[routing.Target, UpstreamResponse]:
        """The first target that answers (it may answer with an error), trying ATTEMPTS of them."""
        for _ in range(ATTEMPTS):
            chosen = await self.admission.choose(
                lambda: [t for t in self.targets(asked.model, asked.affinity, frozenset(tried)) if (t.node_id, t.port) not in dead]
            )
            if chosen is None:
                break
            target = chosen
            # Counted from the choice on (a non-streamed answer's headers come only at its end),
            # so that concurrent requests see each other's load.
            self.in_flight[target.node_id] += 1
            try:
                upstream = await self.open(target, asked.endpoint, asked.raw)
            except UpstreamUnavailable as failure:
                self.in_flight[target.node_id] -= 1
                tried.add(target.node_id)
                self.target_failed(target, asked.endpoint, "unavailable", str(failure))
                continue
            if upstream.status == 503:
                # The far side had no ready server after all: as good as failing before the first byte.
                self.in_flight[target.node_id] -= 1
                tried.add(target.node_id)
                await upstream.close()
                self.target_failed(target, asked.endpoint, "not_ready", "503 from the target")
                continue
            return target, upstream
        raise NoServer(f"model '{asked.model}': its servers failed before answering ({', '.join(sorted(tried))}); retry shortly", 1)

    async def open(self, target: routing.Target, endpoint: str, raw: bytes) -> UpstreamResponse:
        if target.local:
            return await self.local.open(target.port, endpoint, raw, request_id.get())
        if self.tunnel is None:
            raise UpstreamUnavailable("this gateway has no tunnel to peers")
        return await self.tunnel.open(target.address, endpoint, target.model_id, raw, request_id.get())

    def target_failed(self, target: routing.Target, endpoint: str, reason: str, detail: str) -> None:
        self.metrics.errors.labels(target.model_id, target.node_id, reason).inc()
        event(log, "target failed", logging.WARNING, model=target.model_id, node=target.node_id, endpoint=endpoint, reason=detail)

    async def _whole(self, target: routing.Target, endpoint: str, upstream: UpstreamResponse, started: float, dialect: Dialect) -> Response:
        """A non-streamed answer (or an error), read whole; ResponseCut when its server failed while sending it."""
        headers = {"x-request-id": request_id.get(), "x-mesh-node": target.node_id}
        try:
            # A partial body is not an answer: the client gets it whole or not at all.
            body = b"".join([chunk async for chunk in upstream.chunks])
        finally:
            await upstream.close()
            self.in_flight[target.node_id] -= 1
        self.metrics.requests.labels(target.model_id, target.node_id, endpoint, str(upstream.status)).inc()
        self.metrics.time_to_first_token.labels(target.model_id, target.node_id).observe(time.perf_counter() - started)
        self.finished(target, endpoint, usage_of_response(body), started, status=upstream.status)
        if upstream.status >= 400:
            body = dialect.error_body(upstream.status, body)
        return Response(body, status_code=upstream.status, media_type=upstream.content_type, headers=headers)

    def finished(
        self,
        target: routing.Target,
        endpoint: str,
        usage: tuple[int, int],
        started: float,
        status: int = 0,
        failure: str | None = None,
        client_left: bool = False,
        takeovers: int = 0,
    ) -> None:
        """Metrics and the one log line of a request that got a response (its target's failure is counted where it failed)."""
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
            **({"takeovers": takeovers} if takeovers else {}),
        }
        if failure is not None:
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

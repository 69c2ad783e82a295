"""One streamed answer, carried from server to server until it ends: the leg serving it now, and
the takeover when that server fails after the client has had part of the answer.

Owns the stream the client reads (one stream, whatever the legs), the raw events kept for a
takeover, waiting for a ready server (the client gets SSE comments meanwhile), and the takeover
metrics and log line. What a continuation asks and how its events are rewritten is the API's
Resume (continuation.py); which server comes next is routing's, through the relay. While all is
well a chunk costs a list append: events are read (JSON-parsed) only when a takeover needs them,
and only a continuation's events are rewritten.

A takeover is bounded: at most TakeoverPolicy.limit of them per answer, each waiting at most
TakeoverPolicy.wait for a ready server; past either, or for an answer that cannot be continued,
the stream ends with the API's error event as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.common.logs import event
from services.gateway import routing
from services.gateway.openai import sse
from services.gateway.openai.continuation import CannotResume, Progress
from services.gateway.openai.usage import usage_of_stream_tail
from services.gateway.upstream import ResponseCut, UpstreamResponse, UpstreamUnavailable

if TYPE_CHECKING:
    from services.gateway.openai.relay import Asked, Dialect, Relay

TAIL_BYTES = 8192
KEPT_BYTES = 8 << 20  # of one answer's events kept for a takeover (~30k tokens); a longer answer is not taken over
KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: clients skip it, and their read timeouts start over
KEEPALIVE_SECONDS = 5.0  # between two comments while a cut answer waits for a server
POLL_SECONDS = 0.2  # between two looks at the mesh view for a ready server

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TakeoverPolicy:
    limit: int = 2  # takeovers one answer may have
    wait: float = 30.0  # seconds a cut answer waits for a ready server


DEFAULT_POLICY = TakeoverPolicy()  # the gateway's settings build theirs (settings.py says why these)


@dataclass(frozen=True)
class Leg:
    """The server serving an answer now, and its response."""

    target: routing.Target
    upstream: UpstreamResponse


class StreamedAnswer:
    """One client's streamed answer, from its first server to its end, through takeovers."""

    def __init__(self, relay: Relay, asked: Asked, leg: Leg, started: float, dialect: Dialect) -> None:
        self.relay = relay
        self.asked = asked
        self.dialect = dialect
        self.started = started
        self.leg: Leg | None = leg
        self.target = leg.target  # the last server that served it: the log line's node
        self.keeping = dialect.resume is not None and relay.takeover.limit > 0
        self.sent: list[bytes] = []  # the events the client has, while it may be taken over
        self.kept = 0  # their bytes
        self.takeovers = 0
        self.dead: set[tuple[str, int]] = set()  # (node, port) of servers that failed this answer
        self.rewrite: Callable[[bytes], bytes] | None = None  # the continuation's events -> the client's
        self.tokens_before = 0  # the tokens the client had when the serving leg took over
        self.last = 0.0  # when the last chunk came
        self.quiet_since = 0.0  # when the answer's text stopped, while a takeover's first chunk is awaited
        self.gave_up = ""  # why the last cut was not taken over
        self.done = False

    async def release(self, usage: tuple[int, int] = (0, 0), failure: str | None = None, client_left: bool = True) -> None:
        """Let go of the answer, once, whoever gets there first: its stream's end, or the response
        when the client left before the stream began. Counts come before the await: a cancelled
        close must not skip them."""
        if self.done:
            return
        self.done = True
        self.relay.finished(
            self.target, self.asked.endpoint, usage, self.started, status=200, failure=failure, client_left=client_left, takeovers=self.takeovers
        )
        await self._drop_leg()

    async def _drop_leg(self) -> None:
        leg, self.leg = self.leg, None
        if leg is not None:
            self.relay.in_flight[leg.target.node_id] -= 1
            # Closing upstream makes llama-server (here or on the peer) free the slot.
            await leg.upstream.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        ended, failure, usage = False, None, (0, 0)
        try:
            while (leg := self.leg) is not None:
                tail = held = b""
                failure = None
                try:
                    async for chunk in leg.upstream.chunks:
                        self._timed(leg.target)
                        events, held = sse.whole_events(held, chunk)
                        if events:
                            tail = (tail + events)[-TAIL_BYTES:]
                            if passed := self._passed(events):
                                yield passed
                    if not self.dialect.reached_its_end(tail + held):
                        failure = f"the stream ended without {self.dialect.last_event}"
                    elif held and (passed := self._passed(held)):
                        yield passed  # the last event, short of its blank line
                except ResponseCut as cut:
                    failure = str(cut)
                if failure is None:
                    prompt, completion = usage_of_stream_tail(tail)
                    usage = (max(0, prompt - self.tokens_before), completion + self.tokens_before)
                    break
                async for keepalive in self._take_over(leg, failure):
                    yield keepalive
                if self.leg is None:
                    failure = f"{failure}; not taken over: {self.gave_up}"
            ended = True
        finally:
            await self.release(usage, failure, client_left=not ended)
        if failure is not None:
            # The stream says it failed, then ends as clients expect.
            yield self.dialect.cut_stream_end(f"the server of '{self.target.model_id}' failed mid-stream: {failure}")

    def _timed(self, target: routing.Target) -> None:
        metrics, now = self.relay.metrics, time.perf_counter()
        if self.quiet_since:
            # The client's text stopped when the failed server's did; it goes on now.
            metrics.takeover_seconds.labels(target.model_id).observe(now - self.quiet_since)
            self.quiet_since = 0.0
        elif not self.last:
            metrics.time_to_first_token.labels(target.model_id, target.node_id).observe(now - self.started)
        else:
            metrics.inter_token.labels(target.model_id).observe(now - self.last)
        self.last = now

    def _passed(self, events: bytes) -> bytes:
        """The events as the client gets them, kept while the answer may be taken over."""
        if self.rewrite is not None:
            events = self.rewrite(events)
        if self.keeping:
            self.kept += len(events)
            if self.kept <= KEPT_BYTES:
                self.sent.append(events)
        return events

    async def _take_over(self, failed: Leg, failure: str) -> AsyncIterator[bytes]:
        """Move the answer to another ready server of its model (self.leg), yielding keep-alive
        comments while none is ready; self.leg stays None when it cannot (self.gave_up says why)."""
        cut_at = time.perf_counter()
        target, endpoint, policy = failed.target, self.asked.endpoint, self.relay.takeover
        self.relay.target_failed(target, endpoint, "cut", failure)
        self.dead.add((target.node_id, target.port))
        await self._drop_leg()
        try:
            body, progress, rewrite = self._continuation()
            deadline, keepalive_at = cut_at + policy.wait, cut_at
            while True:
                for candidate in self.relay.ready_targets(self.asked.model, self.asked.affinity, self.dead):
                    if (upstream := await self._open(candidate, body)) is not None:
                        self._resumed(Leg(candidate, upstream), failed, progress, rewrite, cut_at)
                        return
                now = time.perf_counter()
                if now >= deadline:
                    raise CannotResume(f"no other server of '{target.model_id}' was ready within {policy.wait:g}s")
                if now >= keepalive_at:
                    yield KEEPALIVE
                    keepalive_at = now + KEEPALIVE_SECONDS
                await asyncio.sleep(min(POLL_SECONDS, deadline - now))
        except CannotResume as why:
            self.gave_up = str(why)
            self.relay.metrics.takeovers.labels(target.model_id, "failed").inc()
            event(log, "takeover failed", logging.WARNING, model=target.model_id, failed=target.node_id, endpoint=endpoint, reason=self.gave_up)

    def _continuation(self) -> tuple[bytes, Progress, Callable[[bytes], bytes]]:
        """(the continuation's request body, what the client has of the answer, the rewriter of
        the continuation's events), or CannotResume."""
        resume, limit = self.dialect.resume, self.relay.takeover.limit
        if resume is None:
            raise CannotResume(f"answers of {self.asked.endpoint} are not continued")
        if self.takeovers >= limit:
            raise CannotResume(f"the bound of {limit} takeovers was reached")
        if self.kept > KEPT_BYTES:
            raise CannotResume("the answer is longer than a gateway keeps")
        progress = resume.progress(b"".join(self.sent))
        return resume.request(self.asked.raw, progress), progress, resume.rewriter(progress)

    async def _open(self, target: routing.Target, body: bytes) -> UpstreamResponse | None:
        """The continuation's response from `target`; None when the target failed before answering."""
        endpoint, node = self.asked.endpoint, target.node_id
        self.relay.in_flight[node] += 1
        upstream: UpstreamResponse | None = None
        try:
            upstream = await self.relay.open(target, endpoint, body)
        except UpstreamUnavailable as failure:
            self.relay.target_failed(target, endpoint, "unavailable", str(failure))
        finally:
            # Counted while it serves the answer only (a cancelled open included).
            if upstream is None or upstream.status != 200:
                self.relay.in_flight[node] -= 1
        if upstream is not None and upstream.status == 200:
            return upstream
        if upstream is not None:
            await upstream.close()
            if 400 <= upstream.status < 500:
                # The continuation itself was refused: every server would refuse it.
                raise CannotResume(f"{node} refused the continuation ({upstream.status})")
            self.relay.target_failed(target, endpoint, "not_ready", f"{upstream.status} from the target")
        self.dead.add((node, target.port))
        return None

    def _resumed(self, leg: Leg, failed: Leg, progress: Progress, rewrite: Callable[[bytes], bytes], cut_at: float) -> None:
        self.leg, self.target = leg, leg.target
        self.rewrite = rewrite
        self.tokens_before = progress.tokens
        self.takeovers += 1
        self.quiet_since = self.last or cut_at
        self.relay.metrics.takeovers.labels(leg.target.model_id, "resumed").inc()
        event(
            log,
            "takeover",
            logging.WARNING,
            model=leg.target.model_id,
            node=leg.target.node_id,
            failed=failed.target.node_id,
            endpoint=self.asked.endpoint,
            tokens=progress.tokens,
            takeovers=self.takeovers,
            ms=round((time.perf_counter() - cut_at) * 1000),
        )

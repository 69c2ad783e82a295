"""Calls to sibling services on this node: one failure policy for every caller.

A sibling restarting is routine (the node's launcher starts it again), never a reason for the
caller to stop: a unary call that finds it away is retried with backoff, a stream that it cut is
opened again. What a sibling answers on purpose (NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION…)
is not retried: it reaches the caller as the error it is.

Owns retry and reconnection; must not know what any call means.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from services.common.logs import event

log = logging.getLogger(__name__)
Reply = TypeVar("Reply")
Item = TypeVar("Item")

# UNAVAILABLE: the sibling is down or restarting. CANCELLED: it stopped while answering us (our own
# cancellation arrives as asyncio.CancelledError instead, and is never retried).
RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: quick while a sibling restarts, calm while it stays away."""

    first: float = 0.1  # seconds before the first retry: a restart takes a second or two
    cap: float = 5.0  # seconds between retries at most: a sibling back up is found within this

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.first * 2**attempt) * random.uniform(0.5, 1.0)


BACKOFF = Backoff()


def retried(failure: BaseException) -> bool:
    """True for the failures this policy rides out (a sibling away), False for answers."""
    return isinstance(failure, grpc.aio.AioRpcError) and failure.code() in RETRIED


async def call(send: Callable[[], Awaitable[Reply]], what: str, backoff: Backoff = BACKOFF) -> Reply:
    """The reply of `send()` (one unary call), sent again while the sibling is away."""
    attempt = 0
    while True:
        try:
            return await send()
        except grpc.aio.AioRpcError as failed:
            if failed.code() not in RETRIED:
                raise
            delay = backoff.delay(attempt)
            event(log, "sibling call retried", logging.WARNING, call=what, code=failed.code().name, in_seconds=round(delay, 2))
            attempt += 1
            await asyncio.sleep(delay)


async def follow(open_stream: Callable[[], AsyncIterable[Item]], what: str, backoff: Backoff = BACKOFF) -> AsyncIterator[Item]:
    """Every item of a server stream, opened again (with backoff) whenever the sibling cuts it or
    ends it. The caller sees one endless stream; a stream opened again starts with the sibling's
    current state, as each of our Watch streams does."""
    attempt = 0
    while True:
        try:
            async for item in open_stream():
                attempt = 0
                yield item
            reason = "ended"
        except grpc.aio.AioRpcError as lost:
            if lost.code() not in RETRIED:
                raise
            reason = lost.code().name
        delay = backoff.delay(attempt)
        event(log, "sibling stream reopened", logging.WARNING, stream=what, reason=reason, in_seconds=round(delay, 2))
        attempt += 1
        await asyncio.sleep(delay)

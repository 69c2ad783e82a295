"""The sibling-call policy: retry and reopen while a sibling is away, pass its answers through."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from services.common import calls

QUICK = calls.Backoff(first=0.001, cap=0.002)


def failure(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


def test_a_call_is_sent_again_while_the_sibling_is_away():
    outcomes = [failure(grpc.StatusCode.UNAVAILABLE), failure(grpc.StatusCode.CANCELLED), "reply"]

    async def send():
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert asyncio.run(calls.call(send, "Test", QUICK)) == "reply"
    assert outcomes == []


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION])
def test_an_answer_reaches_the_caller_unretried(code):
    sent = []

    async def send():
        sent.append(1)
        raise failure(code)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(calls.call(send, "Test", QUICK))
    assert raised.value.code() == code and len(sent) == 1


def test_a_cut_or_ended_stream_is_opened_again():
    opened = []

    async def open_stream():
        opened.append(1)
        yield len(opened)
        if len(opened) == 1:
            raise failure(grpc.StatusCode.UNAVAILABLE)
        # the second stream ends; the third goes on

    async def first_three():
        seen = []
        async for item in calls.follow(open_stream, "Watch", QUICK):
            seen.append(item)
            if len(seen) == 3:
                return seen

    assert asyncio.run(first_three()) == [1, 2, 3]


def test_backoff_grows_to_its_cap():
    backoff = calls.Backoff(first=0.1, cap=1.0)
    assert all(0.05 <= backoff.delay(0) <= 0.1 for _ in range(20))
    assert all(0.5 <= backoff.delay(10) <= 1.0 for _ in range(20))

"""A gateway's admission: at most PER_SLOT x slots requests per server, a bounded wait for room, and
503 with Retry-After beyond it."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from services.gateway.admission import Admission, InFlight
from services.gateway.errors import NoServer
from services.gateway.routing import Target

A = Target("m", "a", 1, slots=2)
B = Target("m", "b", 0, "10.0.0.2:1", slots=1)
UNTOLD = Target("m", "old", 0, "10.0.0.3:1")  # a node that does not say its slots


def test_the_first_target_with_room_in_routings_order() -> None:
    loads: Counter[str] = Counter()
    admission = Admission(loads, queue=4, wait=1)

    async def run() -> list[str]:
        chosen = []
        for _ in range(6):
            target = await admission.choose(lambda: [A, B])
            loads[target.node_id] += 1
            chosen.append(target.node_id)
        return chosen

    # A: 2 slots x 2; then B: 1 x 2; a seventh would wait.
    assert asyncio.run(run()) == ["a", "a", "a", "a", "b", "b"]


def test_a_server_that_does_not_say_its_slots_is_never_full() -> None:
    admission = Admission(Counter({"old": 1000}), queue=0, wait=0.01)
    assert asyncio.run(admission.choose(lambda: [UNTOLD])) == UNTOLD


def test_a_waiting_request_gets_the_first_freed_room() -> None:
    loads: Counter[str] = Counter({"a": 4})
    admission = Admission(loads, queue=4, wait=5)

    async def run() -> Target:
        waiting = asyncio.create_task(admission.choose(lambda: [A]))
        await asyncio.sleep(0.05)
        assert not waiting.done() and admission.waiting == 1
        loads["a"] -= 1
        admission.released()
        return await waiting

    assert asyncio.run(run()) == A


def test_the_wait_is_bounded_and_ends_in_503_with_retry_after() -> None:
    admission = Admission(Counter({"a": 4}), queue=4, wait=0.1)
    with pytest.raises(NoServer) as refused:
        asyncio.run(admission.choose(lambda: [A]))
    assert refused.value.status == 503 and "stayed busy for 0.1 s" in str(refused.value)
    assert refused.value.headers["Retry-After"] == "1"
    assert admission.waiting == 0


def test_a_full_queue_is_refused_at_once() -> None:
    loads: Counter[str] = Counter({"a": 4})
    admission = Admission(loads, queue=2, wait=5)

    async def run() -> str:
        waiters = [asyncio.create_task(admission.choose(lambda: [A])) for _ in range(2)]
        await asyncio.sleep(0.05)
        try:
            await admission.choose(lambda: [A])
        except NoServer as refused:
            return str(refused)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return "admitted"

    assert "2 requests already wait" in asyncio.run(run())


def test_servers_are_asked_again_after_each_wait() -> None:
    loads: Counter[str] = Counter({"a": 4})
    admission = Admission(loads, queue=4, wait=5)
    servers = [[A]]

    async def run() -> Target:
        waiting = asyncio.create_task(admission.choose(lambda: servers[0]))
        await asyncio.sleep(0.05)
        servers[0] = [A, B]  # a second server became ready
        admission.released()
        return await waiting

    assert asyncio.run(run()) == B


def test_no_target_at_all_is_none_not_a_wait() -> None:
    admission = Admission(Counter(), queue=4, wait=5)
    assert asyncio.run(admission.choose(list)) is None


def test_a_decrement_anywhere_wakes_the_waiters() -> None:
    loads = InFlight()
    loads["a"] = 4
    admission = Admission(loads, queue=4, wait=5)

    async def run() -> Target | None:
        waiting = asyncio.create_task(admission.choose(lambda: [A]))
        await asyncio.sleep(0.05)
        loads["a"] -= 1  # as the relay or a takeover lets go, with no call to admission
        return await waiting

    assert asyncio.run(run()) == A

"""How many requests a gateway sends each server at once, and what happens to the rest.

A llama-server works on `slots` requests at once (the runner sizes them: runner/sizing.py) and
queues the others without bound. A gateway that forwarded everything would leave clients waiting
minutes for a first token, past their timeouts, with every waiting body held. So a gateway sends a
server at most PER_SLOT x slots requests (its slots busy and as many waiting there, so the next
starts the moment a slot frees). A request that finds every server of its model full waits here
for room, behind at most `queue` others and for at most `wait` seconds; past either it gets 503 with
Retry-After: excess load is told when to come back, never left hanging, and the gateway's memory
stays bounded however many clients call.

Counts are this gateway's own (the relay's in-flight requests per node); other gateways of the mesh
send to the same servers, so a server's queue is bounded by the number of gateways, not by one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from services.gateway.errors import NoServer
from services.gateway.routing import Target

PER_SLOT = 2  # requests in flight per slot of a server: the busy ones and one waiting each


class InFlight(Counter[str]):
    """The relay's requests in flight per node id; every decrement calls `on_release`, so requests
    waiting for room look again wherever a request lets go (the relay, a takeover, a stream's end)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_release: Callable[[], None] = lambda: None

    def __setitem__(self, key: str, value: int) -> None:
        released = value < self.get(key, 0)
        super().__setitem__(key, value)
        if released:
            self.on_release()


class Admission:
    def __init__(self, in_flight: Counter[str], *, queue: int, wait: float, per_slot: int = PER_SLOT) -> None:
        self.in_flight = in_flight  # the relay's counts, per node id
        self.queue = queue  # requests that may wait for room at once
        self.wait = wait  # seconds a request may wait for room
        self.per_slot = per_slot
        self.waiting = 0
        self._freed = asyncio.Event()  # set (and replaced) whenever a request lets go of a server
        if isinstance(in_flight, InFlight):
            in_flight.on_release = self.released

    def has_room(self, target: Target) -> bool:
        return not target.slots or self.in_flight[target.node_id] < target.slots * self.per_slot

    async def choose(self, targets: Callable[[], list[Target]]) -> Target | None:
        """The first of `targets()` (routing's order) with room, waiting for one if all are full;
        None when there is no target at all; NoServer (503, Retry-After) when the queue is full or
        the wait runs out. `targets()` is asked again after each wait: servers come and go."""
        listed = targets()
        if not listed:
            return None
        found = self._first_with_room(listed)
        if found is not None:
            return found
        if self.waiting >= self.queue:
            raise NoServer(f"every server of the model is busy and {self.waiting} requests already wait for one; retry shortly", self.retry_after)
        self.waiting += 1
        try:
            async with asyncio.timeout(self.wait):
                while found is None:
                    await self._freed.wait()
                    listed = targets()
                    if not listed:
                        return None
                    found = self._first_with_room(listed)
        except TimeoutError:
            raise NoServer(f"every server of the model stayed busy for {self.wait:g} s; retry shortly", self.retry_after) from None
        finally:
            self.waiting -= 1
        return found

    def released(self) -> None:
        """A request let go of a server: waiters look again."""
        freed, self._freed = self._freed, asyncio.Event()
        freed.set()

    @property
    def retry_after(self) -> int:
        return max(1, round(self.wait / 5))

    def _first_with_room(self, targets: list[Target]) -> Target | None:
        return next((target for target in targets if self.has_room(target)), None)

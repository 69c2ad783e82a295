"""A version counter that watchers wait on: each wakes with the latest state, never a backlog.

Owns nothing but the counter; a slow watcher skips versions instead of slowing the writer.
"""

from __future__ import annotations

import asyncio


class Changes:
    def __init__(self) -> None:
        self.version = 0
        self._condition = asyncio.Condition()

    async def publish(self) -> None:
        async with self._condition:
            self.version += 1
            self._condition.notify_all()

    async def wait_newer(self, seen: int, timeout: float | None = None) -> int:
        """The current version once it is past `seen` (or at `timeout`, whatever it is then)."""
        async with self._condition:
            try:
                await asyncio.wait_for(self._condition.wait_for(lambda: self.version > seen), timeout)
            except TimeoutError:
                # A timeout is how callers send keepalives: not an error.
                pass
            return self.version

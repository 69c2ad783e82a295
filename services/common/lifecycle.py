"""Running a service: one asyncio task that SIGTERM or SIGINT cancels, then a clean exit.

Owns signal handling for service processes; must not know what the service does.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` until it returns or a stop signal cancels it."""
    asyncio.run(_run_until_signal(main))


async def _run_until_signal(main: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        # Cancellation is how a stop signal ends the service: not an error.
        pass

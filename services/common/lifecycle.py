"""Running a service: one asyncio task that SIGTERM or SIGINT cancels, then a clean exit.

Owns signal handling for service processes; must not know what the service does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.common import clock, cpus, logs
from services.common.settings import NodeSettings

Settings = TypeVar("Settings", bound=BaseSettings)


def load(settings_class: type[Settings], service: str) -> Settings:
    """Settings from the environment, or one line naming the bad variable and exit code 2."""
    try:
        return settings_class()
    except ValidationError as invalid:
        first = invalid.errors()[0]
        prefix = settings_class.model_config.get("env_prefix", "")
        variable = prefix + ".".join(str(part) for part in first["loc"]).upper()
        print(f"mesh-llm {service}: bad setting {variable}: {first['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def run_service(service: str, main: Callable[[NodeSettings, Settings], Coroutine[Any, Any, None]], settings_class: type[Settings]) -> None:
    """Load the node's and the service's settings from the environment, set up logs, run `main`."""
    node = load(NodeSettings, service)
    settings = load(settings_class, service)
    logs.configure(service, node.name, node.log_level)
    if clock.hooked():  # a chaos test's node whose clock jumps (clock.py)
        logs.event(logging.getLogger(service), "wall clock offset by a test hook", logging.WARNING, file=os.environ[clock.VARIABLE])
    if service in cpus.SERVICES and node.services_idle:
        if cpus.run_at_idle_priority():
            logs.event(logging.getLogger(service), "idle priority")
        else:
            logs.event(logging.getLogger(service), "idle priority unavailable: normal priority", logging.WARNING if cpus.can_idle() else logging.INFO)
    run(main(node, settings))


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

"""Supervising one child process: start, readiness probe, log pump, restart with backoff, stop.

Owns the lifecycle of one llama-server (or rpc-server); the argv comes from command.py.
State machine: starting -> ready -> (crash) failed -> starting ...; stop() -> stopped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from services.common import clock
from services.common.children import die_with_parent
from services.common.logs import event
from services.common.ports import reserve_tcp_port
from services.common.records import ProcessState
from services.runner.command import child_environment
from services.runner.rpc_tls import dial_host
from services.runner.settings import RunnerSettings

log = logging.getLogger(__name__)

STARTING, READY, FAILED, STOPPED = ProcessState.STARTING, ProcessState.READY, ProcessState.FAILED, ProcessState.STOPPED


@dataclass
class ChildStatus:
    state: ProcessState = STARTING
    port: int = 0
    restarts: int = 0
    last_error: str = ""
    retry_at: float = 0.0
    pid: int = 0
    load_seconds: float = 0.0  # from the last start to ready
    stderr_tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=20))


def restart_delay(failures: int, initial: float, maximum: float) -> float:
    """Seconds to wait before restart number `failures` (1-based): doubling, capped."""
    return min(maximum, initial * 2 ** max(0, failures - 1))


class ChildFailed(Exception):
    """The child exited or never became ready."""


class Supervisor:
    """Keeps one child running until cancelled; `on_change` is awaited on every state change."""

    def __init__(
        self,
        name: str,
        build_argv: Callable[[int], list[str]],
        health_path: str | None,
        settings: RunnerSettings,
        on_change: Callable[[], Awaitable[None]],
        environment: dict[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.host = host  # where the child listens (its argv says so); probed where this machine dials it
        self.environment = environment or {}
        self.build_argv = build_argv
        self.health_path = health_path
        self.settings = settings
        self.on_change = on_change
        self.status = ChildStatus()

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                started = time.monotonic()
                try:
                    await self._run_once()
                except ChildFailed as failure:
                    if time.monotonic() - started > self.settings.stable_after:
                        failures = 0
                    failures += 1
                    await self._wait_before_restart(str(failure), failures)
        finally:
            await self._set(state=STOPPED, pid=0)

    async def _run_once(self) -> None:
        port = reserve_tcp_port(dial_host(self.host))
        await self._set(state=STARTING, port=port, retry_at=0.0)
        process = await asyncio.create_subprocess_exec(
            *die_with_parent(self.build_argv(port)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=child_environment(dict(os.environ), self.environment),
            # Its own process group: a terminal's Ctrl-C reaches us, and we stop it in order.
            start_new_session=True,
        )
        await self._set(pid=process.pid)
        started = time.monotonic()
        event(log, "child started", child=self.name, pid=process.pid, port=port)
        pump = asyncio.create_task(self._pump_output(process))
        try:
            await self._wait_ready(process, port)
            await self._set(state=READY, load_seconds=time.monotonic() - started)
            event(log, "child ready", child=self.name, port=port, seconds=round(self.status.load_seconds, 2))
            code = await process.wait()
            raise ChildFailed(f"{self.name} exited with code {code}")
        finally:
            await stop_process(process, self.settings.stop_timeout)
            await pump

    async def _wait_ready(self, process: asyncio.subprocess.Process, port: int) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if process.returncode is not None:
                    raise ChildFailed(f"{self.name} exited with code {process.returncode} while starting")
                if await self._probe(client, port):
                    return
                await asyncio.sleep(0.1)
        raise ChildFailed(f"{self.name} not ready after {self.settings.ready_timeout:.0f}s")

    async def _probe(self, client: httpx.AsyncClient, port: int) -> bool:
        try:
            if self.health_path is None:
                _, writer = await asyncio.open_connection(dial_host(self.host), port)
                writer.close()
                return True
            response = await client.get(f"http://127.0.0.1:{port}{self.health_path}")
            return response.status_code == 200
        except (OSError, httpx.HTTPError):
            # Not listening yet (or still loading): keep probing until the deadline.
            return False

    async def _pump_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.status.stderr_tail.append(line)
            log.debug("%s: %s", self.name, line)

    async def _wait_before_restart(self, reason: str, failures: int) -> None:
        delay = restart_delay(failures, self.settings.restart_backoff_initial, self.settings.restart_backoff_max)
        tail = " | ".join(list(self.status.stderr_tail)[-3:])
        event(log, "child failed", logging.WARNING, child=self.name, reason=reason, restart_in=f"{delay:.1f}s", tail=tail)
        await self._set(
            state=FAILED, pid=0, restarts=self.status.restarts + 1, last_error=f"{reason}: {tail}" if tail else reason, retry_at=clock.now() + delay
        )
        await asyncio.sleep(delay)

    async def _set(self, **changes: object) -> None:
        for name, value in changes.items():
            setattr(self.status, name, value)
        await self.on_change()


async def stop_process(process: asyncio.subprocess.Process, timeout: float) -> None:
    """SIGTERM the child's process group, then SIGKILL after `timeout` seconds."""
    if process.returncode is not None:
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), timeout)
    except TimeoutError:
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()


def _signal_group(pid: int, number: int) -> None:
    try:
        os.killpg(pid, number)
    except ProcessLookupError:
        # Already gone: nothing left to stop.
        pass

"""The runner's Supervisor starts a child on the cores it is given, every thread of it included
(threads a child starts before anyone could pin it from outside are the ones that would escape)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from services.runner.settings import RunnerSettings
from services.runner.supervisor import READY, Supervisor

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")]

# Starts three threads at once, then listens (the supervisor's readiness probe), then waits.
CHILD = """
import socket, sys, threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every real server does (services/common/ports.py)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
time.sleep(60)
"""


def allowed_cpus(pid: int) -> set[str]:
    """Cpus_allowed_list of every thread of `pid`."""
    lists = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                lists.add(line.split(":", 1)[1].strip())
    return lists


def test_every_thread_of_a_supervised_child_runs_on_its_cores() -> None:
    asyncio.run(every_thread_on_its_cores())


async def every_thread_on_its_cores() -> None:
    core = max(os.sched_getaffinity(0))
    supervisor = Supervisor("pinned", lambda port: [sys.executable, "-c", CHILD, str(port)], None, RunnerSettings(), lambda: asyncio.sleep(0), cores=(core,))
    task = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(30):
            while supervisor.status.state != READY:
                await asyncio.sleep(0.05)
        pid = supervisor.status.pid
        assert len(list(Path(f"/proc/{pid}/task").iterdir())) >= 4
        assert allowed_cpus(pid) == {str(core)}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

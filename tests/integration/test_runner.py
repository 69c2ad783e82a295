"""The runner's LlamaServers against the real llama-server: ready, crash, backoff restart, stop."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest

from services.common.settings import NodeSettings
from services.runner.models import resolve
from services.runner.servers import LlamaServers
from services.runner.settings import RunnerSettings
from tests.conftest import SMOLLM2

pytestmark = pytest.mark.integration


async def wait_for(servers: LlamaServers, model_id: str, predicate, timeout: float = 60.0):
    async def until():
        seen = -1
        while True:
            state = servers.state_of(model_id)
            if predicate(state):
                return state
            seen = await servers.changes.wait_newer(seen, timeout=1.0)

    return await asyncio.wait_for(until(), timeout)


def test_crash_restarts_with_backoff_and_stop_leaves_nothing(llama_bin_dir: Path, tmp_path: Path) -> None:
    model = resolve(SMOLLM2, tmp_path)
    settings = RunnerSettings(restart_backoff_initial=1.0)

    async def scenario() -> None:
        servers = LlamaServers(settings, tmp_path / "cache", llama_bin_dir, NodeSettings().cache)
        servers.serve(model.model_id, model.path)
        ready = await wait_for(servers, SMOLLM2, lambda s: s.state == "ready")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{ready.port}/health")).status_code == 200
        first_pid = servers.pid_of(SMOLLM2)

        os.kill(first_pid, signal.SIGKILL)
        failed = await wait_for(servers, SMOLLM2, lambda s: s.state == "failed")
        assert failed.restarts == 1 and failed.retry_at > 0 and "exited" in failed.last_error
        back = await wait_for(servers, SMOLLM2, lambda s: s.state == "ready")
        second_pid = servers.pid_of(SMOLLM2)
        assert back.restarts == 1 and second_pid != first_pid

        await servers.stop(SMOLLM2)
        assert not psutil.pid_exists(second_pid) or psutil.Process(second_pid).status() == psutil.STATUS_ZOMBIE
        assert servers.states() == []

    asyncio.run(scenario())


def test_a_model_llama_server_cannot_load_is_reported_failed(llama_bin_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\xff" * 64)
    settings = RunnerSettings(restart_backoff_initial=5.0)

    async def scenario() -> None:
        servers = LlamaServers(settings, tmp_path / "cache", llama_bin_dir, NodeSettings().cache)
        servers.serve("broken", broken)
        failed = await wait_for(servers, "broken", lambda s: s.state == "failed")
        assert failed.last_error and failed.restarts == 1
        await servers.stop_all()

    asyncio.run(scenario())

"""The llama-servers this node runs, one supervised child per model.

Owns starting and stopping per-model supervisors and reporting their states; argv comes from
command.py, process handling from supervisor.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from services.common.changes import Changes
from services.common.records import ServedModel
from services.runner import binaries
from services.runner.command import llama_server_argv
from services.runner.settings import RunnerSettings
from services.runner.supervisor import Supervisor


@dataclass
class _Served:
    path: Path
    supervisor: Supervisor
    task: asyncio.Task[None]


class LlamaServers:
    def __init__(self, settings: RunnerSettings) -> None:
        self.settings = settings
        self.changes = Changes()
        self._served: dict[str, _Served] = {}

    def serve(self, model_id: str, path: Path) -> ServedModel:
        """Start supervising llama-server for the model; a model already served is left as is."""
        if model_id not in self._served:
            binary = binaries.binary("llama-server", self.settings.llama_bin)
            s = self.settings

            def argv(port: int) -> list[str]:
                return llama_server_argv(binary, path, model_id, port, ctx_size=s.ctx_size, threads=s.threads, device=s.device)

            supervisor = Supervisor(f"llama-server[{model_id}]", argv, "/health", s, self.changes.publish)
            task = asyncio.create_task(supervisor.run(), name=f"serve {model_id}")
            self._served[model_id] = _Served(path, supervisor, task)
        return self.state_of(model_id)

    async def stop(self, model_id: str) -> bool:
        served = self._served.pop(model_id, None)
        if served is None:
            return False
        served.task.cancel()
        await asyncio.gather(served.task, return_exceptions=True)
        await self.changes.publish()
        return True

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(model_id) for model_id in list(self._served)))

    def pid_of(self, model_id: str) -> int:
        """The process id of the model's llama-server (0 while it is not running)."""
        return self._served[model_id].supervisor.status.pid

    def states(self) -> list[ServedModel]:
        return [self.state_of(model_id) for model_id in sorted(self._served)]

    def state_of(self, model_id: str) -> ServedModel:
        served = self._served[model_id]
        status = served.supervisor.status
        return ServedModel(
            model_id=model_id, path=str(served.path), state=status.state, port=status.port, restarts=status.restarts,
            last_error=status.last_error, retry_at=status.retry_at, size_bytes=served.path.stat().st_size,
        )

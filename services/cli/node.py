"""One node: the four services as child processes, started together and stopped together.

Owns the children's lifetimes; each child builds its own settings from the environment we give it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from services.common.children import die_with_parent

SERVICES = ("gossip", "runner", "placement", "gateway")
PASSED_THROUGH = ("MESH_LLM_CACHE",)  # where the runner keeps its compiled tensor hashing library


class Node:
    def __init__(self, environments: dict[str, dict[str, str]]) -> None:
        self.environments = environments
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        # The CLI's flags are the services' only settings, but for the cache root (not a service setting).
        base = {name: value for name, value in os.environ.items() if not name.startswith("MESH_") or name in PASSED_THROUGH}
        for service in SERVICES:
            argv = die_with_parent([sys.executable, "-m", f"services.{service}"], "TERM")
            self.children[service] = subprocess.Popen(argv, env=base | self.environments[service])

    def wait(self, stop_requested: list[int]) -> int:
        """Block until a stop signal arrives (exit 0) or a service dies (exit 1)."""
        while not stop_requested:
            for service, child in self.children.items():
                if child.poll() is not None:
                    print(f"mesh-llm: the {service} service exited with code {child.returncode}; stopping the node", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every service (the runner stops its llama-servers), then SIGKILL stragglers."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

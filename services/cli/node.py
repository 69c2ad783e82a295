"""One node: the four services as child processes, started together and stopped together.

A service that dies on its own is started again (with backoff): its siblings ride out its absence
(services/common/calls.py), so one crash is routine, never the end of the node. Only a service that
keeps dying, or refuses its settings, stops the node.

Owns the children's lifetimes; each child builds its own settings from the environment we give it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from services.common.children import die_with_parent

SERVICES = ("gossip", "runner", "placement", "gateway")
# Where the runner keeps its compiled tensor hashing library; a chaos test's clock offset (common/clock.py).
PASSED_THROUGH = ("MESH_LLM_CACHE", "MESH_NODE_CLOCK_OFFSET_FILE")

RESTART_FIRST = 0.5  # seconds before the first restart: a crash is usually a one-off
RESTART_CAP = 10.0  # seconds between restarts at most, while a service keeps dying
RESTART_WINDOW = 60.0  # seconds over which a service's deaths are counted
RESTART_LIMIT = 5  # restarts within the window before we give up: it would keep dying; its log says why
SETTINGS_REFUSED = 2  # a service's exit code for a bad setting (lifecycle.load): the same environment fails again


def restart_delay(deaths: Sequence[float], now: float, code: int) -> float | None:
    """Seconds to wait before starting a service again, or None to give up and stop the node.

    `deaths` are the monotonic times it died, the latest (with exit code `code`) included."""
    recent = [died for died in deaths if now - died <= RESTART_WINDOW]
    if code == SETTINGS_REFUSED or len(recent) > RESTART_LIMIT:
        return None
    return min(RESTART_CAP, RESTART_FIRST * 2 ** (len(recent) - 1))


class Node:
    def __init__(self, environments: dict[str, dict[str, str]]) -> None:
        self.environments = environments
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.deaths: dict[str, list[float]] = {service: [] for service in SERVICES}  # monotonic times each died
        self.restart_at: dict[str, float] = {}  # services waiting out their backoff: when to start them

    def start(self) -> None:
        for service in SERVICES:
            self.start_service(service)

    def start_service(self, service: str) -> None:
        # The CLI's flags are the services' only settings, but for the cache root (not a service setting).
        base = {name: value for name, value in os.environ.items() if not name.startswith("MESH_") or name in PASSED_THROUGH}
        argv = die_with_parent([sys.executable, "-m", f"services.{service}"], "TERM")
        self.children[service] = subprocess.Popen(argv, env=base | self.environments[service])

    def wait(self, stop_requested: list[int]) -> int:
        """Block until a stop signal arrives (exit 0) or a service keeps dying (exit 1); a service
        that died is started again meanwhile."""
        while not stop_requested:
            now = time.monotonic()
            for service, child in list(self.children.items()):
                if service in self.restart_at:
                    if now >= self.restart_at[service]:
                        del self.restart_at[service]
                        self.start_service(service)
                elif child.poll() is not None and not self.schedule_restart(service, child.returncode, now):
                    return 1
            time.sleep(0.2)
        return 0

    def schedule_restart(self, service: str, code: int, now: float) -> bool:
        """Note a service's death and when to start it again (one line on stderr); False: give up."""
        self.deaths[service] = [died for died in self.deaths[service] if now - died <= RESTART_WINDOW] + [now]
        delay = restart_delay(self.deaths[service], now, code)
        if delay is None:
            print(f"mesh-llm: the {service} service exited with code {code}; stopping the node", file=sys.stderr)
            return False
        print(f"mesh-llm: the {service} service exited with code {code}; starting it again in {delay:.1f}s", file=sys.stderr, flush=True)
        self.restart_at[service] = now + delay
        return True

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

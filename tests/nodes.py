"""Test helpers: run real `mesh-llm` nodes as child processes and wait on them.

A node that dies while we wait fails the test at once, with the tail of its log.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import psutil

from services.common.ports import free_udp_port, reserve_tcp_port

MESH_LLM = Path(sys.executable).parent / "mesh-llm"
# Without the installed console script (a machine with the repo on PYTHONPATH only), the same entry point.
MESH_LLM_ARGV = [str(MESH_LLM)] if MESH_LLM.exists() else [sys.executable, "-c", "import sys; from services.cli.main import run; sys.exit(run())"]


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port for a server a test starts: TCP ones held from other processes until it binds (ports.py)."""
    return reserve_tcp_port(host) if kind == socket.SOCK_STREAM else free_udp_port(host)


class NodeProcess:
    """One node started with the CLI, its own ports, home and log file."""

    def __init__(self, workdir: Path, *args: str, host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.host = host
        self.port = free_port(host)
        self.console = free_port(host)
        self.home = workdir / "home"
        self.log_path = workdir / "node.log"
        self.argv = [
            *MESH_LLM_ARGV,
            "--port",
            str(self.port),
            "--console",
            str(self.console),
            "--home",
            str(self.home),
            "--models-dir",
            str(workdir / "models"),
            *args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def console_url(self) -> str:
        return f"http://{self.host}:{self.console}"

    def start(self, env: dict[str, str] | None = None) -> NodeProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # Its own session, like a terminal's foreground job: Ctrl-C is SIGINT to the whole group.
        # Several test nodes share this machine's cores: idle-priority services would wait on every
        # other node's llama (services/common/cpus.py), so it is off unless a caller turns it on.
        self.process = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={"MESH_NODE_SERVICES_IDLE": "false"} | os.environ | (env or {}),
        )
        return self

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"node exited with {self.process.returncode}:\n{self.log_tail()}")

    def status(self) -> dict:
        return httpx.get(f"{self.console_url}/api/status", timeout=5).json()

    def model_state(self, model_id: str) -> dict | None:
        return next((m for m in self.status()["models"] if m["model_id"] == model_id), None)

    def wait_ready(self, model_id: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                state = self.model_state(model_id)
            except httpx.HTTPError:
                state = None
            if state and state["state"] == "ready":
                return state
            time.sleep(0.1)
        raise AssertionError(f"{model_id} not ready after {timeout}s:\n{self.log_tail()}")

    def descendants(self) -> list[psutil.Process]:
        assert self.process is not None
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def sockets(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """(TCP listening addresses, UDP socket addresses) of every process of this node."""
        listeners, udp = [], []
        for process in [psutil.Process(self.process.pid), *self.descendants()]:
            for connection in process.net_connections(kind="inet"):
                if connection.type == socket.SOCK_STREAM and connection.status == psutil.CONN_LISTEN:
                    listeners.append((connection.laddr.ip, connection.laddr.port))
                elif connection.type == socket.SOCK_DGRAM:
                    udp.append((connection.laddr.ip, connection.laddr.port))
        return listeners, udp

    def llama_servers(self) -> list[psutil.Process]:
        return [p for p in self.descendants() if _name(p) == "llama-server"]

    def token(self, timeout: float = 30.0) -> str:
        """The invite token the node printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            for word in self.log_path.read_text(errors="replace").split():
                if word.startswith("mesh1-"):
                    return word
            time.sleep(0.1)
        raise AssertionError(f"no invite token printed:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the node's CLI and every service under it, like a machine losing power."""
        assert self.process is not None
        victims = [psutil.Process(self.process.pid), *self.descendants()]
        for victim in victims:
            try:
                victim.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(10)

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C: SIGINT to the node's process group; the exit code."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Stop whatever is left, in any state (test teardown)."""
        stop_all([self])


def stop_all(nodes: Iterable[NodeProcess]) -> None:
    """Stop every node at once (test teardown): each takes a second or more to stop its services
    and llama.cpp processes, mostly waiting, so one after another would cost their sum."""
    running = [(node.process, node.descendants()) for node in nodes if node.process is not None and node.process.poll() is None]
    for process, _ in running:
        process.send_signal(signal.SIGTERM)
    for process, leftovers in running:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        for child in leftovers:
            if child.is_running():
                child.kill()


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return ""

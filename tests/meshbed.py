"""Test bed: N real nodes on one machine, each on its own loopback address, with our UDP relay in
front of every node's QUIC endpoint so tests can add delay, loss or partitions between them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from pathlib import Path

import httpx

from tests.nodes import NodeProcess, free_port, stop_all
from tests.relay import Relay


class MeshBed:
    def __init__(self, workdir: Path, relayed: bool = True) -> None:
        self.workdir = workdir
        self.relayed = relayed  # False: nodes dial each other directly (no relay to shape links)
        self.relay = Relay()
        self.nodes: dict[str, NodeProcess] = {}
        self._next_ip = 2

    def start(self, name: str, *args: str, join: NodeProcess | None = None, token: str | None = None, env: dict[str, str] | None = None) -> NodeProcess:
        ip = f"127.0.0.{self._next_ip}"
        self._next_ip += 1
        quic = free_port(ip, socket.SOCK_DGRAM)
        advertised = quic
        if self.relayed:
            advertised = free_port(ip, socket.SOCK_DGRAM)
            self.relay.front(ip, advertised, (ip, quic))
        argv = ["--host", ip, "--bind-port", str(quic), "--advertise", f"{ip}:{advertised}", "--profile", "test", "--name", name, *args]
        if join is not None or token is not None:
            argv += ["--join", token or join.token()]
        node = NodeProcess(self.workdir / name, *argv, host=ip).start(env)
        node.name = name
        self.nodes[name] = node
        return node

    def ip_of(self, name: str) -> str:
        return self.nodes[name].host

    def peers_seen_by(self, name: str) -> dict[str, str]:
        """{peer name: state} in the node's /api/status; {} while it does not answer."""
        node = self.nodes[name]
        node.check_alive()
        try:
            return {peer["name"]: peer["state"] for peer in node.status()["peers"]}
        except (httpx.HTTPError, ValueError, KeyError):
            return {}

    def wait_until(self, predicate, timeout: float, what: str) -> float:
        """Seconds it took for predicate() to hold; fails with every node's view after `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if predicate():
                return time.monotonic() - started
            time.sleep(0.05)
        views = {name: self.peers_seen_by(name) for name, node in self.nodes.items() if node.process and node.process.poll() is None}
        # A node that exited is no view: its exit code and last lines say why.
        gone = [
            f"{name} exited with {node.process.returncode}:\n{node.log_tail(15)}"
            for name, node in self.nodes.items()
            if node.process and node.process.poll() is not None
        ]
        raise AssertionError("\n".join([f"not {what} after {timeout}s: {views}", *gone]))

    def all_see_each_other(self, names: list[str]) -> bool:
        return all(set(self.peers_seen_by(name)) == set(names) - {name} and set(self.peers_seen_by(name).values()) <= {"alive"} for name in names)

    def close(self) -> None:
        stop_all(self.nodes.values())
        self.relay.close()


def ready_split_host(nodes: Iterable[NodeProcess], model_id: str) -> tuple[NodeProcess, dict] | None:
    """(the node, its assignment) of the split host among `nodes` whose llama-server for the model
    is ready; None while there is none (a node that does not answer yet is passed over)."""
    for node in nodes:
        try:
            (assignment,) = node.status()["assignments"]
            state = node.model_state(model_id)
        except (httpx.HTTPError, ValueError):
            continue
        if assignment["mode"] == "split-host" and state and state["state"] == "ready":
            return node, assignment
    return None

"""A sibling restarting is routine: SIGKILL one of a running node's services and the node carries on.

The CLI starts the service again; its siblings ride out the gap (services/common/calls.py) and pick
it up when it is back; users' chats are answered throughout, as far as the dead service allows.
Real nodes, real llama-server with SmolLM2."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import psutil
import pytest

from tests.conftest import SMOLLM2
from tests.nodes import NodeProcess

pytestmark = pytest.mark.e2e
HELLO = [{"role": "user", "content": "Say hi."}]


def service_process(node: NodeProcess, service: str) -> psutil.Process | None:
    """The process running services.<service> under the node's CLI; None while there is none."""
    assert node.process is not None
    for child in psutil.Process(node.process.pid).children():
        try:
            if f"services.{service}" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def chat(node: NodeProcess) -> int:
    """The status of one short chat through the node's API (0: no HTTP answer at all)."""
    try:
        response = httpx.post(f"{node.api}/v1/chat/completions", json={"model": SMOLLM2, "messages": HELLO, "max_tokens": 4}, timeout=30)
    except httpx.HTTPError:
        return 0
    return response.status_code


class Chatter:
    """Chats through a node one after another in a thread, noting every answer's status."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Chatter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.statuses.append(chat(self.node))
            time.sleep(0.05)


def wait_until(node: NodeProcess, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Until predicate() holds; fails at once if the node exited, with its log after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node.check_alive()
        try:
            if predicate():
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass  # the console not answering yet is a "not yet"
        time.sleep(0.1)
    raise AssertionError(f"not {what} after {timeout}s:\n{node.log_tail(80)}")


def ready(status: dict) -> bool:
    return any(m["model_id"] == SMOLLM2 and m["kind"] == "llama-server" and m["state"] == "ready" for m in status["models"])


def kill(node: NodeProcess, service: str) -> int:
    """SIGKILL the node's `service`; its pid."""
    victim = service_process(node, service)
    assert victim is not None, f"no {service} process under the node"
    victim.kill()
    victim.wait(10)
    return victim.pid


def restarted(node: NodeProcess, service: str, old_pid: int) -> bool:
    current = service_process(node, service)
    return current is not None and current.pid != old_pid


def test_a_node_whose_gossip_is_killed_keeps_serving(start_node) -> None:
    node = start_node("--model", SMOLLM2)
    node.wait_ready(SMOLLM2)
    before = node.status()
    assert chat(node) == 200
    with Chatter(node) as chatter:
        time.sleep(0.5)
        old_pid = kill(node, "gossip")
        wait_until(node, lambda: restarted(node, "gossip", old_pid), 30, "gossip started again")
        # The new gossip starts with an empty own record (a newer version); placement publishes
        # this node's models into it again and the gateway follows the new gossip's view.
        wait_until(node, lambda: node.status()["version"] > before["version"] and ready(node.status()), 60, "the node's record published again")
        wait_until(node, lambda: len(chatter.statuses) >= 5, 30, "chats answered after the restart")
    node.check_alive()
    assert "the gossip service exited with code -9; starting it again" in node.log_path.read_text()
    assert chatter.statuses and set(chatter.statuses) == {200}, f"chats answered otherwise than 200: {chatter.statuses}"
    assert node.status()["id"] == before["id"], "the same node, not a new one"
    assert chat(node) == 200


def test_a_node_whose_runner_is_killed_serves_again(start_node) -> None:
    node = start_node("--model", SMOLLM2)
    node.wait_ready(SMOLLM2)
    (llama,) = node.llama_servers()
    old_pid = kill(node, "runner")
    wait_until(node, lambda: restarted(node, "runner", old_pid), 30, "the runner started again")
    # Its llama-server went with it (it dies with its parent); placement asks the new runner to serve.
    wait_until(node, lambda: not llama.is_running() or llama.status() == psutil.STATUS_ZOMBIE, 30, "the old llama-server gone")
    wait_until(node, lambda: chat(node) == 200, 120, "chats answered by a new llama-server")
    node.check_alive()
    assert [server.pid for server in node.llama_servers()] != [llama.pid]


def test_a_mesh_rides_out_gossip_restarts_on_both_nodes(mesh_bed) -> None:
    a = mesh_bed.start("A", "--model", SMOLLM2)
    b = mesh_bed.start("B", "--client", join=a)
    a.wait_ready(SMOLLM2)

    def b_sees_a_serving(newer_than: int) -> bool:
        peer = next((p for p in b.status()["peers"] if p["name"] == "A"), None)
        return peer is not None and peer["state"] == "alive" and peer["version"] > newer_than and ready(peer)

    wait_until(b, lambda: b_sees_a_serving(0) and chat(b) == 200, 60, "B routing chats to A")
    # A created the mesh (no seeds): its new gossip learns B again from B's probes. A new gossip's
    # own record starts at version = its start time in ms: a version above the kill's time is the
    # new gossip's (a.status() may still show the old record for a while), so B is killed only
    # once A's restart is over: in turn, not both at once.
    a_version = int(time.time() * 1000)
    old_pid = kill(a, "gossip")
    wait_until(a, lambda: restarted(a, "gossip", old_pid), 30, "A's gossip started again")
    # Up to a minute seen on 2 busy cores (issue 22 looks into it): bounded, not timed.
    wait_until(b, lambda: b_sees_a_serving(a_version), 150, "B seeing A's new record, serving")
    wait_until(b, lambda: chat(b) == 200, 30, "chats through B answered by A")
    # B joined through A's token: its new gossip joins again through the same seed.
    b_version = int(time.time() * 1000)
    old_pid = kill(b, "gossip")
    wait_until(b, lambda: restarted(b, "gossip", old_pid), 30, "B's gossip started again")
    wait_until(b, lambda: b.status()["version"] > b_version and b_sees_a_serving(a_version), 150, "B back in the mesh")
    wait_until(
        a, lambda: any(p["name"] == "B" and p["state"] == "alive" and p["version"] > b_version for p in a.status()["peers"]), 30, "A seeing B's new record"
    )
    assert chat(b) == 200 and chat(a) == 200
    a.check_alive()
    b.check_alive()

"""LAN discovery over mDNS between two machines: network namespaces of the test's own, joined by a
veth pair (tests/netns.py). A node in the first serves SmolLM2; `mesh-llm discover` in the second
lists its mesh with the model and an RTT, and never the mesh secret; a node started with
--no-announce beside it is not listed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.common import mesh_identity
from services.common.invite import decode
from tests.conftest import SMOLLM2
from tests.netns import Namespace, linked_namespaces
from tests.nodes import MESH_LLM_ARGV

pytestmark = pytest.mark.e2e

KEY = "sk-mesh-test-key"  # a non-loopback --host needs an API key


@contextmanager
def node_in(ns: Namespace, workdir: Path, api_port: int, console_port: int, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A node inside `ns`, bound to its LAN address, stopped (its whole session) whatever happens."""
    workdir.mkdir(parents=True)
    argv = [*MESH_LLM_ARGV, "--host", ns.address, "--api-key", KEY, "--port", str(api_port), "--console", str(console_port)]
    argv += ["--home", str(workdir / "home"), "--models-dir", str(workdir / "models"), *args]
    with (workdir / "node.log").open("wb") as log:
        node = subprocess.Popen(
            ns.argv(*argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={"MESH_NODE_SERVICES_IDLE": "false", **os.environ}
        )
    try:
        yield node
    finally:
        node.terminate()
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, 9)
            node.wait(10)


def status_of(ns: Namespace, console_port: int, node: subprocess.Popen[bytes], log: Path) -> dict:
    """The node's /api/status, read from inside its namespace (the console is on its loopback)."""
    if node.poll() is not None:
        raise AssertionError(f"node exited with {node.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
    code, body = ns.request(f"http://127.0.0.1:{console_port}/api/status")
    return json.loads(body) if code == 200 else {}


def serves(status: dict) -> bool:
    return any(model["model_id"] == SMOLLM2 and model["state"] == "ready" for model in status.get("models", []))


def wait_for(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not {what} after {timeout}s")


def discover(ns: Namespace) -> str:
    done = subprocess.run(ns.argv(*MESH_LLM_ARGV, "discover"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return done.stdout


def encodings(secret: bytes, token: str) -> list[str]:
    """Every form the mesh secret could leak in."""
    return [token, secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(), base64.urlsafe_b64encode(secret).decode().rstrip("=")]


def test_discover_lists_a_mesh_on_the_lan_with_its_model_and_never_its_secret(tmp_path: Path, llama_bin_dir: Path) -> None:
    with linked_namespaces() as (one, two):
        announced, quiet = tmp_path / "announced", tmp_path / "quiet"
        with (
            node_in(one, announced, 19337, 19338, "--model", SMOLLM2, "--name", "lan-node") as node,
            node_in(one, quiet, 19347, 19348, "--name", "quiet-node", "--no-announce") as quiet_node,
        ):
            wait_for("quiet node up", lambda: status_of(one, 19348, quiet_node, quiet / "node.log").get("id"), 60)
            wait_for(f"{SMOLLM2} ready", lambda: serves(status_of(one, 19338, node, announced / "node.log")), 180)
            status = status_of(one, 19338, node, announced / "node.log")
            mesh = mesh_identity.load(announced / "home")
            hidden = mesh_identity.load(quiet / "home")
            assert mesh is not None and hidden is not None and decode(status["token"]).secret == mesh.secret

            started = time.monotonic()
            listing = discover(two)
            took = time.monotonic() - started
            while SMOLLM2 not in listing and time.monotonic() - started < 30:  # the announcement follows readiness within seconds
                listing = discover(two)
            print(f"discover took {took:.1f}s:\n{listing}")

            rows = [line for line in listing.splitlines() if line.startswith(mesh.mesh_id)]
            assert len(rows) == 1, listing
            assert SMOLLM2 in rows[0] and "lan-node" in rows[0], listing
            assert " ms" in rows[0], f"the node's QUIC port answered no RTT probe:\n{listing}"
            assert hidden.mesh_id not in listing and "quiet-node" not in listing, f"--no-announce was announced:\n{listing}"
            for leaked in encodings(mesh.secret, status["token"]):
                assert leaked not in listing, "discover printed the mesh secret"

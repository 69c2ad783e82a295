"""What other machines can reach: the API only with a key, the console never, the token nowhere.

A node bound to a non-loopback address runs in a network namespace of the test's own
(tests/netns.py), and every request comes from inside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from services.common.invite import decode
from tests.conftest import SMOLLM2
from tests.netns import namespace
from tests.nodes import MESH_LLM_ARGV, is_loopback

pytestmark = pytest.mark.e2e

API_PORT, CONSOLE_PORT, KEY = 19337, 19338, "sk-mesh-test-key"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.213.7.1", "::", "myhost.example"])
def test_a_non_loopback_host_without_an_api_key_is_refused(tmp_path: Path, host: str) -> None:
    done = subprocess.run([*MESH_LLM_ARGV, "--host", host, "--model", SMOLLM2, "--home", str(tmp_path / "home")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"--host {host}" in done.stderr and "--api-key" in done.stderr


def test_a_loopback_host_needs_no_key(tmp_path: Path) -> None:
    """Test meshes bind 127.0.0.x without keys: the check must not refuse them (it stops at --port here)."""
    done = subprocess.run([*MESH_LLM_ARGV, "--host", "127.0.0.9", "--port", "0", "--home", str(tmp_path / "home")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--port 0 is not a valid port" in done.stderr


def test_with_a_key_the_api_faces_the_network_and_the_console_and_token_do_not(tmp_path: Path, llama_bin_dir: Path) -> None:
    with namespace() as ns:
        log = (tmp_path / "node.log").open("wb")
        node = subprocess.Popen(
            ns.argv(
                *MESH_LLM_ARGV,
                "--host",
                ns.address,
                "--api-key",
                KEY,
                "--model",
                SMOLLM2,
                "--port",
                str(API_PORT),
                "--console",
                str(CONSOLE_PORT),
                "--home",
                str(tmp_path / "home"),
                "--models-dir",
                str(tmp_path / "models"),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={"MESH_NODE_SERVICES_IDLE": "false", **os.environ},
        )
        try:
            status = wait_ready(ns, node, tmp_path / "node.log")
            token = status["token"]
            assert token, "the console on loopback shows the token"
            secret = decode(token).secret.hex()
            api = f"http://{ns.address}:{API_PORT}"
            answers = {
                "models, no key": ns.request(f"{api}/v1/models"),
                "models, wrong key": ns.request(f"{api}/v1/models", headers={"Authorization": "Bearer nope"}),
                "chat, no key": ns.request(f"{api}/v1/chat/completions", "POST", body={"model": SMOLLM2, "messages": [{"role": "user", "content": "hi"}]}),
                "metrics, no key": ns.request(f"{api}/metrics"),
                "status on the API port, no key": ns.request(f"{api}/api/status"),
                "models, key": ns.request(f"{api}/v1/models", headers={"Authorization": f"Bearer {KEY}"}),
                "chat, key": ns.request(
                    f"{api}/v1/chat/completions",
                    "POST",
                    headers={"Authorization": f"Bearer {KEY}"},
                    body={"model": SMOLLM2, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
                ),
                "metrics, key": ns.request(f"{api}/metrics", headers={"Authorization": f"Bearer {KEY}"}),
                "status on the API port, key": ns.request(f"{api}/api/status", headers={"Authorization": f"Bearer {KEY}"}),
                "health": ns.request(f"{api}/health"),
            }
            for name in ("models, no key", "models, wrong key", "chat, no key", "metrics, no key", "status on the API port, no key"):
                status_code, body = answers[name]
                assert status_code == 401, name
                assert json.loads(body)["error"]["code"] == "invalid_api_key", name
            assert answers["models, key"][0] == 200 and SMOLLM2 in answers["models, key"][1]
            assert answers["chat, key"][0] == 200 and json.loads(answers["chat, key"][1])["choices"]
            assert answers["metrics, key"][0] == 200 and answers["health"][0] == 200
            assert answers["status on the API port, key"][0] == 404
            console_beyond_loopback = ns.request(f"http://{ns.address}:{CONSOLE_PORT}/api/status")
            assert console_beyond_loopback[0] == 0, "the console must not be reachable on the non-loopback address"
            for name, (_, body) in answers.items():
                assert token not in body and secret not in body, f"{name} leaked the mesh secret"
            listening = subprocess.run(ns.argv("ss", "-Hltn"), capture_output=True, text=True, check=True).stdout
            local = [line.split()[3] for line in listening.splitlines()]
            beyond = [address for address in local if not is_loopback(address.rpartition(":")[0].strip("[]"))]
            assert beyond == [f"{ns.address}:{API_PORT}"], f"TCP listeners beyond loopback: {beyond}"
        finally:
            node.terminate()
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                subprocess.run(["pkill", "-KILL", "-s", str(node.pid)])
                node.wait(10)


def wait_ready(ns, node: subprocess.Popen, log: Path, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise AssertionError(f"node exited with {node.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        status_code, body = ns.request(f"http://127.0.0.1:{CONSOLE_PORT}/api/status")
        if status_code == 200:
            status = json.loads(body)
            if any(m["model_id"] == SMOLLM2 and m["state"] == "ready" for m in status["models"]):
                return status
        time.sleep(0.5)
    raise AssertionError(f"{SMOLLM2} not ready after {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")

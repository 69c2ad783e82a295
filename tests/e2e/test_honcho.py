"""`honcho start` with the shipped Procfile runs a whole node from environment variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import SMOLLM2
from tests.nodes import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split(": ", 1) for line in lines)


def grpc_health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def test_procfile_and_compose_run_the_same_four_services() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert set(procfile()) == set(compose["services"]) == {"gateway", "gossip", "placement", "runner"}
    for name, command in procfile().items():
        assert command == " ".join(compose["services"][name]["command"])


def test_honcho_start_serves_the_model(tmp_path: Path, llama_bin_dir: Path) -> None:
    ports = {name: free_port() for name in ("gateway", "gossip", "placement", "runner", "api", "console")}
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "MESH_NODE_HOME": str(tmp_path / "home"),
        "MESH_GATEWAY_API_PORT": str(ports["api"]),
        "MESH_GATEWAY_CONSOLE_PORT": str(ports["console"]),
        **{f"MESH_NODE_{name.upper()}_GRPC_PORT": str(ports[name]) for name in ("gateway", "gossip", "placement", "runner")},
    }
    # The shipped .env with this test's ports in place of the defaults (honcho lets .env win).
    env_file = tmp_path / "node.env"
    shipped = [line for line in (ROOT / ".env").read_text().splitlines() if line.startswith("MESH_PLACEMENT_MODELS=")]
    env_file.write_text("\n".join(shipped + [f"{name}={value}" for name, value in env.items() if name.startswith("MESH_")]) + "\n")
    honcho = subprocess.Popen(
        [str(Path(sys.executable).parent / "honcho"), "start", "-e", str(env_file)],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "honcho.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        answer = None
        while time.monotonic() < deadline and answer is None:
            assert honcho.poll() is None, (tmp_path / "honcho.log").read_text()
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{ports['api']}/v1/completions", json={"model": SMOLLM2, "prompt": "Hello", "max_tokens": 4}, timeout=30
                )
                if response.status_code == 200:
                    answer = response.json()["choices"][0]["text"]
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert answer is not None, (tmp_path / "honcho.log").read_text()[-3000:]
        for service in ("gateway", "gossip", "placement", "runner"):
            assert grpc_health(ports[service]) == health_pb2.HealthCheckResponse.SERVING, service
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGINT)
            honcho.wait(30)

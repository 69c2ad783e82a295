"""`honcho start` with the shipped Procfile runs a whole node from environment variables, and joins
a mesh from a token in .env; compose.yaml runs two such nodes that form a mesh."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic_settings import BaseSettings

from services.common.invite import decode
from services.gateway.settings import GatewaySettings
from services.gossip.settings import GossipSettings
from tests.conftest import SMOLLM2
from tests.nodes import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
Settings = TypeVar("Settings", bound=BaseSettings)


def procfile() -> dict[str, str]:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split(": ", 1) for line in lines)


def grpc_health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def compose_environment(service: dict) -> dict[str, str]:
    """A compose service's environment as a container gets it, with no variable set in .env."""
    defaults = {name: str(value) for name, value in (service.get("environment") or {}).items()}
    return {name: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value) for name, value in defaults.items()}


def load(settings_class: type[Settings], environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a service started with `environment` reads."""
    with monkeypatch.context() as scoped:
        for variable, value in environment.items():
            scoped.setenv(variable, value)
        return settings_class()


def test_compose_runs_two_nodes_of_the_procfiles_services_that_form_a_mesh(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    nodes = {name.split("-")[0] for name in services if name != "mesh"}
    assert nodes == {"a", "b"}
    for node in nodes:
        assert {name.split("-", 1)[1]: " ".join(services[name]["command"]) for name in services if name.startswith(f"{node}-")} == procfile()
        assert services[f"{node}-gateway"]["network_mode"] == "host"
        assert all(services[f"{node}-{name}"]["network_mode"] == f"service:{node}-gateway" for name in ("gossip", "placement", "runner"))
    environments = {name: compose_environment(service) for name, service in services.items()}
    # The two nodes share the host's network: no port of one may be the other's.
    ports = {
        node: {value for name, env in environments.items() if name.startswith(f"{node}-") for key, value in env.items() if key.endswith("_PORT")}
        for node in nodes
    }
    assert not ports["a"] & ports["b"], ports["a"] & ports["b"]
    # Each node's settings load as its services load them: its gossip advertises its gateway's QUIC
    # port, and b is seeded with a's.
    quic = {node: load(GatewaySettings, environments[f"{node}-gateway"], monkeypatch).peer_port for node in nodes}
    gossip = {node: load(GossipSettings, environments[f"{node}-gossip"], monkeypatch) for node in nodes}
    assert all(quic.values()) and quic["a"] != quic["b"]
    assert all(gossip[node].address.endswith(f":{quic[node]}") for node in nodes)
    assert gossip["a"].bootstrap() == [] and gossip["b"].bootstrap() == [f"127.0.0.1:{quic['a']}"]
    # One mesh stored in both homes before either gossip starts (the mesh service, then them).
    assert services["mesh"]["command"][:3] == ["python", "-m", "services.common.mesh_identity"]
    assert sorted(services["mesh"]["volumes"]) == ["a-data:/homes/a", "b-data:/homes/b"] and services["mesh"]["command"][3:] == ["/homes/a", "/homes/b"]
    for node in nodes:
        assert services[f"{node}-gossip"]["depends_on"]["mesh"] == {"condition": "service_completed_successfully"}
        assert all(services[name]["volumes"] == [f"{node}-data:/data"] for name in services if name.startswith(f"{node}-"))


def test_honcho_start_serves_the_model(tmp_path: Path, llama_bin_dir: Path) -> None:
    ports = {name: free_port() for name in ("gateway", "gossip", "placement", "runner", "api", "console")}
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "MESH_NODE_HOME": str(tmp_path / "home"),
        "MESH_GATEWAY_API_PORT": str(ports["api"]),
        "MESH_GATEWAY_CONSOLE_PORT": str(ports["console"]),
        **{f"MESH_NODE_{name.upper()}_GRPC_PORT": str(ports[name]) for name in ("gateway", "gossip", "placement", "runner")},
    }
    # The shipped .env.example with this test's ports in place of the defaults (honcho lets .env win).
    env_file = tmp_path / "node.env"
    shipped = [line for line in (ROOT / ".env.example").read_text().splitlines() if line.startswith("MESH_PLACEMENT_MODELS=")]
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


@contextmanager
def honcho_node(folder: Path, settings: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`honcho start` of the shipped Procfile in `folder`, whose .env holds `settings`."""
    folder.mkdir(parents=True)
    (folder / ".env").write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    honcho = subprocess.Popen(
        [str(Path(sys.executable).parent / "honcho"), "start", "-f", str(ROOT / "Procfile")],
        cwd=folder,
        env=os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        stdout=(folder / "honcho.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield honcho
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGINT)
            honcho.wait(30)


def test_honcho_start_with_a_token_in_env_joins_a_running_nodes_mesh(tmp_path: Path, mesh_bed) -> None:
    started = time.monotonic()
    first = mesh_bed.start("A", "--model", SMOLLM2)
    token = first.token()
    host = "127.0.0.9"  # a test mesh's own loopback address, past the bed's
    quic, api, console = free_port(host, socket.SOCK_DGRAM), free_port(), free_port()
    settings = {
        "MESH_NODE_HOME": str(tmp_path / "second" / "home"),
        "MESH_NODE_NAME": "H",
        "MESH_NODE_SERVICES_IDLE": "false",  # test nodes share the cores (tests/nodes.py)
        **{f"MESH_NODE_{name}_GRPC_PORT": str(free_port()) for name in ("GATEWAY", "GOSSIP", "PLACEMENT", "RUNNER")},
        **{f"MESH_NODE_{name}_METRICS_PORT": str(free_port()) for name in ("GOSSIP", "PLACEMENT", "RUNNER")},
        "MESH_GATEWAY_API_PORT": str(api),
        "MESH_GATEWAY_CONSOLE_PORT": str(console),
        "MESH_GATEWAY_PEER_HOST": host,
        "MESH_GATEWAY_PEER_PORT": str(quic),
        "MESH_GOSSIP_ADDRESS": f"{host}:{quic}",
        "MESH_GOSSIP_PROFILE": "test",
        "MESH_GOSSIP_JOIN": token,
        # API-only: every answer it gives comes through the mesh, from A.
        "MESH_PLACEMENT_CLIENT": "true",
    }
    with honcho_node(tmp_path / "second", settings) as honcho:
        log = tmp_path / "second" / "honcho.log"

        def status() -> dict:
            assert honcho.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{console}/api/status", timeout=5).json()
            except httpx.HTTPError:
                return {}

        mesh_bed.wait_until(lambda: {p["name"]: p["state"] for p in status().get("peers", [])} == {"A": "alive"}, 60, "H sees A")
        mesh_bed.wait_until(lambda: mesh_bed.peers_seen_by("A") == {"H": "alive"}, 30, "A sees H")
        joined = status()
        assert joined["mesh_id"] == first.status()["mesh_id"]
        # The honcho node invites too: its token names the address it was given.
        assert decode(joined["token"]).bootstrap == (f"{host}:{quic}",)
        first.wait_ready(SMOLLM2)
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline:
            assert honcho.poll() is None, log.read_text()[-3000:]
            response = httpx.post(
                f"http://127.0.0.1:{api}/v1/chat/completions",
                json={"model": SMOLLM2, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8},
                timeout=60,
            )
            if response.status_code == 200:
                answer = response.json()["choices"][0]["message"]["content"]
            else:
                time.sleep(0.2)
        assert answer, log.read_text()[-3000:]
    print(f"honcho node joined and answered through the mesh in {time.monotonic() - started:.1f}s")

"""The exposure rule: loopback addresses, the gateway's settings, the console's token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.common.exposure import is_loopback
from services.common.records import MeshView, NodeRecord
from services.gateway.app import create_console_app
from services.gateway.mirror import MeshMirror
from services.gateway.settings import GatewaySettings


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.7", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.2", False),
        ("192.168.1.5", False),
        ("fe80::1", False),
        ("myhost.example", False),
        ("", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_the_api_beyond_loopback_needs_a_key(host: str) -> None:
    with pytest.raises(ValidationError, match="needs an API key"):
        GatewaySettings(api_host=host)
    assert GatewaySettings(api_host=host, api_key="k").api_host == host


def test_a_node_with_no_api_may_name_any_api_host() -> None:
    assert not GatewaySettings(api_host="0.0.0.0", api_enabled=False).api_enabled


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3"])
def test_the_console_never_binds_beyond_loopback(host: str) -> None:
    with pytest.raises(ValidationError, match="loopback only"):
        GatewaySettings(console_host=host, api_key="k")


def test_the_environment_cannot_open_the_api_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """honcho and compose build settings from the environment: the same rule holds there."""
    monkeypatch.setenv("MESH_GATEWAY_API_HOST", "0.0.0.0")
    with pytest.raises(ValidationError, match="needs an API key"):
        GatewaySettings()


def console(client: tuple[str, int]) -> TestClient:
    mirror = MeshMirror()
    mirror.view = MeshView(own=NodeRecord(node_id="n1", name="n1"), peers=(), mesh_id="m1", secret=b"s" * 32, address="10.0.0.2:7447")
    return TestClient(create_console_app(GatewaySettings(), mirror, "fp"), client=client, base_url="http://127.0.0.1:3131")


def test_the_console_gives_the_token_to_this_machine_only() -> None:
    assert console(("127.0.0.1", 50000)).get("/api/status").json()["token"].startswith("mesh1-")
    hidden = console(("10.0.0.9", 50000)).get("/api/status")
    assert hidden.status_code == 200 and hidden.json()["token"] == ""
    assert (b"s" * 32).hex() not in hidden.text


def test_the_console_answers_only_this_machines_names() -> None:
    """DNS rebinding: a page at evil.example made to resolve to 127.0.0.1 sends Host: evil.example."""
    page = console(("127.0.0.1", 50000))
    assert page.get("/api/status", headers={"Host": "localhost:3131"}).json()["token"]
    rebound = page.get("/api/status", headers={"Host": "evil.example:3131"})
    assert rebound.status_code == 400 and "mesh1-" not in rebound.text

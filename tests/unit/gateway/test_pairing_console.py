"""The console's Approve button (POST /api/pairing/approve): it approves from this machine's console
page only (loopback client, JSON body, no other site's Origin), answers errors in the OpenAI shape,
and /api/status lists the pending requests with their codes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.common.records import MeshView, NodeRecord, PairingRequest
from services.gateway.app import create_console_app
from services.gateway.errors import Conflict
from services.gateway.mirror import MeshMirror
from services.gateway.settings import GatewaySettings

REQUEST = PairingRequest("123456", "j1", "laptop", b"key", "n1", 1_000.0)


def console(approved: list[str], client: tuple[str, int] = ("127.0.0.1", 50000)) -> TestClient:
    mirror = MeshMirror()
    mirror.view = MeshView(own=NodeRecord(node_id="n1", name="n1"), mesh_id="m1", secret=b"s" * 32, address="10.0.0.2:7447", pairing=(REQUEST,))

    async def approve(code: str) -> dict[str, str]:
        if code != REQUEST.code:
            raise Conflict(f"no pairing request shows code {code!r}")
        approved.append(code)
        return {"node_id": "j1", "name": "laptop", "credential_id": "c1"}

    return TestClient(create_console_app(GatewaySettings(), mirror, "fp", approve=approve), client=client, base_url="http://127.0.0.1:3131")


def test_the_status_lists_pending_requests_with_their_codes() -> None:
    status = console([]).get("/api/status").json()
    assert status["pairing"] == [{"code": "123456", "node_id": "j1", "name": "laptop", "via": "n1", "requested_at": 1000.0}]
    assert status["credential"] == "member"


def test_the_button_approves_the_code() -> None:
    approved: list[str] = []
    answer = console(approved).post("/api/pairing/approve", json={"code": "123456"}, headers={"Origin": "http://127.0.0.1:3131"})
    assert answer.status_code == 200 and answer.json()["name"] == "laptop" and approved == ["123456"]


@pytest.mark.parametrize(
    ("client", "request_args", "status"),
    [
        (("127.0.0.1", 1), {"json": {"code": "999999"}}, 409),  # no such request: said, not approved
        (("10.0.0.9", 1), {"json": {"code": "123456"}}, 403),  # another machine
        (("127.0.0.1", 1), {"json": {"code": "123456"}, "headers": {"Origin": "https://evil.example"}}, 403),  # another site's page
        (("127.0.0.1", 1), {"content": "code=123456", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400),  # a form
        (("127.0.0.1", 1), {"json": {"code": ""}}, 400),
    ],
    ids=["unknown code", "other machine", "other origin", "form post", "empty code"],
)
def test_anything_else_is_refused_in_the_openai_error_shape(client: tuple[str, int], request_args: dict, status: int) -> None:
    approved: list[str] = []
    answer = console(approved, client).post("/api/pairing/approve", **request_args)
    assert answer.status_code == status, answer.text
    assert set(answer.json()["error"]) == {"message", "type", "code"} and approved == []

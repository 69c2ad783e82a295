"""The API's answers to bad input and missing servers: OpenAI error shape, right status."""

import pytest
from fastapi.testclient import TestClient

from services.common.records import MeshView, NodeRecord, ServedModel
from services.gateway.app import create_api_app
from services.gateway.metrics import GatewayMetrics
from services.gateway.mirror import MeshMirror
from services.gateway.openai.relay import Relay
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import LocalUpstream


def client(*served: ServedModel, api_key: str = "") -> TestClient:
    settings = GatewaySettings(api_key=api_key)
    mirror = MeshMirror()
    mirror.view = MeshView(own=NodeRecord(node_id="me", name="me", served=served))
    metrics = GatewayMetrics()
    return TestClient(create_api_app(settings, mirror, Relay(mirror, metrics, LocalUpstream(1.0), None), metrics))


def assert_openai_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and error["code"] == code
    return error


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m", "messages": "hi"}', "messages"),
        (b'{"model": 3, "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', "stream"),
    ],
)
def test_bad_chat_bodies_get_400(body: bytes, fragment: str) -> None:
    error = assert_openai_error(client().post("/v1/chat/completions", content=body), 400, "invalid_request")
    assert fragment in error["message"]


def test_bad_completion_prompt_gets_400() -> None:
    response = client().post("/v1/completions", json={"model": "m", "prompt": {"a": 1}})
    assert_openai_error(response, 400, "invalid_request")


def test_unknown_model_gets_404_listing_served_models() -> None:
    response = client(ServedModel("alpha", "/a", "ready", 1)).post(
        "/v1/chat/completions", json={"model": "beta", "messages": [{"role": "user", "content": "hi"}]}
    )
    error = assert_openai_error(response, 404, "model_not_found")
    assert "alpha" in error["message"]


def test_model_without_ready_server_gets_503_with_retry_after() -> None:
    response = client(ServedModel("alpha", "/a", "starting")).post("/v1/completions", json={"model": "alpha", "prompt": "x"})
    assert_openai_error(response, 503, "model_not_ready")
    assert int(response.headers["retry-after"]) >= 1


def test_ready_server_that_does_not_answer_gets_503() -> None:
    # Port 9 on loopback: nothing listens there, so the connect fails at once.
    response = client(ServedModel("alpha", "/a", "ready", port=9)).post("/v1/completions", json={"model": "alpha", "prompt": "x"})
    assert_openai_error(response, 503, "model_not_ready")


def test_unknown_path_is_an_openai_shaped_404() -> None:
    assert_openai_error(client().get("/v1/nothing"), 404, "not_found")


def test_api_key_is_required_when_set() -> None:
    api = client(ServedModel("alpha", "/a", "ready", 1), api_key="s3cret")
    assert_openai_error(api.get("/v1/models"), 401, "invalid_api_key")
    assert api.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert api.get("/health").status_code == 200


def test_request_id_is_echoed_or_made() -> None:
    api = client()
    assert api.get("/v1/models", headers={"X-Request-Id": "abc"}).headers["x-request-id"] == "abc"
    assert api.get("/v1/models").headers["x-request-id"]

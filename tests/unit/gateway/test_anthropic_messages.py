"""POST /v1/messages on the gateway: Anthropic-shaped errors for every failure (bad input, unknown
model, no server, no key, an upstream error, a stream cut short), Anthropic streams passed through
unchanged, and the tables of the pure parts (error types, upstream errors, stream ends).
The upstream is a script standing in for llama-server or a peer's tunnel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from fastapi.testclient import TestClient

from services.common.records import MeshView, NodeRecord, ServedModel
from services.gateway.anthropic import errors
from services.gateway.anthropic.messages import dialect
from services.gateway.anthropic.messages.schemas import MessagesRequest
from services.gateway.app import create_api_app
from services.gateway.metrics import GatewayMetrics
from services.gateway.mirror import MeshMirror
from services.gateway.openai.relay import Relay
from services.gateway.openai.sse import last_event_name
from services.gateway.openai.takeover import TakeoverPolicy
from services.gateway.openai.usage import usage_of_stream_tail
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import LocalUpstream, ResponseCut, UpstreamResponse

HI = [{"role": "user", "content": "Hi"}]
# The events of a real llama-server answer (max_tokens 2), ids shortened.
STREAM = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"c1","type":"message","role":"assistant","content":[],"model":"alpha",'
    b'"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":0}}}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}\n\n',
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":2}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]


class ScriptedUpstream:
    """Answers every request with one status and the given chunks; an exception in the script is raised there."""

    def __init__(self, script: list[bytes | Exception], status: int = 200, content_type: str = "text/event-stream") -> None:
        self.script, self.status, self.content_type = script, status, content_type
        self.paths: list[str] = []

    async def open(self, port: int, path: str, raw: bytes, request_id: str) -> UpstreamResponse:
        self.paths.append(path)
        return UpstreamResponse(self.status, self.content_type, self._chunks(), self._close)

    async def _chunks(self) -> AsyncIterator[bytes]:
        for step in self.script:
            if isinstance(step, Exception):
                raise step
            yield step

    async def _close(self) -> None:
        pass


def gateway(upstream: ScriptedUpstream | None = None, *served: ServedModel, api_key: str = "") -> TestClient:
    mirror = MeshMirror()
    mirror.view = MeshView(own=NodeRecord(node_id="me", name="me", served=served or (ServedModel("alpha", "/a", "ready", 1),)))
    metrics = GatewayMetrics()
    # A scripted stand-in for llama-server; a cut answer waits for no other server (test_takeover.py has those).
    relay = Relay(mirror, metrics, upstream or LocalUpstream(1.0), None, takeover=TakeoverPolicy(wait=0))
    return TestClient(create_api_app(GatewaySettings(api_key=api_key), mirror, relay, metrics))


def assert_anthropic_error(response, status: int, type_: str) -> str:
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"} and body["error"]["type"] == type_
    return body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "JSON object"),
        (json.dumps({"model": "alpha", "messages": HI}).encode(), "max_tokens"),
        (json.dumps({"model": "alpha", "messages": HI, "max_tokens": 0}).encode(), "max_tokens"),
        (json.dumps({"model": "alpha", "messages": [], "max_tokens": 8}).encode(), "messages"),
        (json.dumps({"model": "alpha", "messages": [{"role": "system", "content": "x"}], "max_tokens": 8}).encode(), "role"),
        (json.dumps({"model": "alpha", "messages": HI, "max_tokens": 8, "stream": "yes"}).encode(), "stream"),
        (json.dumps({"messages": HI, "max_tokens": 8}).encode(), "model"),
    ],
)
def test_bad_bodies_get_anthropic_400s(body: bytes, fragment: str) -> None:
    assert fragment in assert_anthropic_error(gateway().post("/v1/messages", content=body), 400, "invalid_request_error")


def test_count_tokens_needs_no_max_tokens_but_checks_the_rest() -> None:
    assert_anthropic_error(gateway().post("/v1/messages/count_tokens", json={"model": "alpha"}), 400, "invalid_request_error")
    upstream = ScriptedUpstream([b'{"input_tokens": 7}'], content_type="application/json")
    response = gateway(upstream).post("/v1/messages/count_tokens", json={"model": "alpha", "messages": HI})
    assert response.json() == {"input_tokens": 7} and upstream.paths == ["/v1/messages/count_tokens"]


def test_unknown_model_is_an_anthropic_404_naming_the_served_ones() -> None:
    message = assert_anthropic_error(gateway().post("/v1/messages", json={"model": "beta", "messages": HI, "max_tokens": 8}), 404, "not_found_error")
    assert "alpha" in message


def test_a_model_with_no_ready_server_is_overloaded_with_retry_after() -> None:
    response = gateway(None, ServedModel("alpha", "/a", "starting")).post("/v1/messages", json={"model": "alpha", "messages": HI, "max_tokens": 8})
    assert_anthropic_error(response, 503, "overloaded_error")
    assert int(response.headers["retry-after"]) >= 1


def test_wrong_method_and_unknown_subpath_are_anthropic_shaped() -> None:
    assert_anthropic_error(gateway().get("/v1/messages"), 405, "invalid_request_error")
    assert_anthropic_error(gateway().post("/v1/messages/nothing", json={}), 404, "not_found_error")


def test_the_api_key_is_taken_from_x_api_key_or_bearer_and_refused_in_anthropic_shape() -> None:
    upstream = ScriptedUpstream([b'{"type":"message","content":[]}'], content_type="application/json")
    api = gateway(upstream, api_key="s3cret")
    body = {"model": "alpha", "messages": HI, "max_tokens": 8}
    assert_anthropic_error(api.post("/v1/messages", json=body), 401, "authentication_error")
    assert_anthropic_error(api.post("/v1/messages", json=body, headers={"x-api-key": "wrong"}), 401, "authentication_error")
    assert api.post("/v1/messages", json=body, headers={"x-api-key": "s3cret"}).status_code == 200
    assert api.post("/v1/messages", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # The OpenAI paths take the Anthropic header too, and still answer in their own shape.
    assert api.get("/v1/models", headers={"x-api-key": "s3cret"}).status_code == 200
    assert api.get("/v1/models").json()["error"]["code"] == "invalid_api_key"


def test_an_upstream_error_is_put_in_the_anthropic_shape() -> None:
    llama = b'{"error":{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error"}}'
    response = gateway(ScriptedUpstream([llama], status=400, content_type="application/json")).post(
        "/v1/messages", json={"model": "alpha", "messages": HI, "max_tokens": 8, "stream": True}
    )
    assert assert_anthropic_error(response, 400, "invalid_request_error") == "the request exceeds the available context size"
    assert response.headers["x-mesh-node"] == "me"


def test_a_whole_stream_passes_unchanged() -> None:
    upstream = ScriptedUpstream(STREAM)
    with gateway(upstream).stream("POST", "/v1/messages", json={"model": "alpha", "messages": HI, "max_tokens": 2, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        assert response.read() == b"".join(STREAM)
    assert upstream.paths == ["/v1/messages"]


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ([*STREAM[:4], ResponseCut("peer silent")], "peer silent"),  # the serving node went away
        (STREAM[:6], "message_stop"),  # llama-server ended before message_stop
    ],
)
def test_a_cut_stream_ends_with_an_anthropic_error_event(script: list[bytes | Exception], reason: str) -> None:
    with gateway(ScriptedUpstream(script)).stream("POST", "/v1/messages", json={"model": "alpha", "messages": HI, "max_tokens": 2, "stream": True}) as response:
        events = [event for event in response.read().split(b"\n\n") if event]
    name, data = events[-1].split(b"\n")
    assert name == b"event: error"
    error = json.loads(data.removeprefix(b"data: "))
    assert error["type"] == "error" and error["error"]["type"] == "api_error" and reason in error["error"]["message"]


@pytest.mark.parametrize(
    ("status", "type_"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"), (409, "invalid_request_error"),
     (413, "request_too_large"), (429, "rate_limit_error"), (500, "api_error"), (502, "api_error"), (503, "overloaded_error"), (529, "overloaded_error")],
)  # fmt: skip
def test_error_types_follow_the_status_as_anthropic_sets_them(status: int, type_: str) -> None:
    assert errors.error_type(status) == type_


@pytest.mark.parametrize(
    ("status", "raw", "expected"),
    [
        # llama-server's own error body
        (400, b'{"error":{"code":400,"message":"bad","type":"invalid_request_error"}}', {"type": "invalid_request_error", "message": "bad"}),
        # a peer gateway's OpenAI-shaped error (its model went away)
        (404, b'{"error":{"message":"gone","type":"invalid_request_error","code":"model_not_found"}}', {"type": "not_found_error", "message": "gone"}),
        (500, b"upstream exploded", {"type": "api_error", "message": "upstream exploded"}),
        (500, b"", {"type": "api_error", "message": "the model's server answered 500"}),
        (400, b'{"error": "just text"}', {"type": "invalid_request_error", "message": '{"error": "just text"}'}),
    ],
)
def test_upstream_errors_in_the_anthropic_shape(status: int, raw: bytes, expected: dict) -> None:
    assert json.loads(errors.upstream_error(status, raw)) == {"type": "error", "error": expected}


def test_an_upstream_error_already_in_the_anthropic_shape_is_kept() -> None:
    raw = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
    assert errors.upstream_error(529, raw) == raw


@pytest.mark.parametrize(
    ("tail", "ended"),
    [
        (b"".join(STREAM), True),
        (b"".join(STREAM[:6]), False),
        (b"".join(STREAM[:3]), False),
        (b'event: error\ndata: {"code":500,"message":"x","type":"server_error"}\n\n', True),  # llama-server's error ends its stream
        (b"".join(STREAM) + b":\n\n", True),  # a keep-alive comment is not an event
        (b"event: message_stop\r\ndata: {}\r\n\r\n", True),
        (b"", False),
    ],
)
def test_a_stream_has_ended_after_message_stop_or_error(tail: bytes, ended: bool) -> None:
    assert dialect.reached_its_end(tail) is ended


@pytest.mark.parametrize(
    ("tail", "name"),
    [(b"data: [DONE]\n\n", ""), (b"event: a\ndata: {}\n\nevent: b\ndata: {}\n\n", "b"), (b"event: a\ndata: {}\n\n: ping\n\n", "a"), (b"event: half", "half")],
)
def test_last_event_name(tail: bytes, name: str) -> None:
    assert last_event_name(tail) == name


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"messages": HI}, {"messages": [*HI, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "More"}]}, True),
        ({"messages": HI, "system": "one"}, {"messages": HI, "system": "two"}, False),
        ({"messages": HI}, {"messages": [{"role": "user", "content": "Bye"}]}, False),
        ({"messages": HI, "metadata": {"user_id": "u"}}, {"messages": [{"role": "user", "content": "Bye"}], "metadata": {"user_id": "u"}}, True),
    ],
)
def test_a_conversation_keeps_its_affinity_across_turns(a: dict, b: dict, same: bool) -> None:
    first, second = (MessagesRequest.model_validate({"model": "m", "max_tokens": 1, **body}).affinity() for body in (a, b))
    assert (first == second) is same


def test_usage_of_a_stream_takes_input_from_message_start_and_output_from_message_delta() -> None:
    assert usage_of_stream_tail(b"".join(STREAM)) == (7, 2)
    assert usage_of_stream_tail(b"".join(STREAM[2:])) == (0, 2)  # message_start beyond the tail window

"""POST /v1/responses on the gateway: OpenAI-shaped errors, Responses API streams passed through
unchanged and ended with the API's own `error` event when cut, token counts read from its usage,
and the tables of the pure parts (stream ends, affinity)."""

from __future__ import annotations

import json

import pytest

from services.common.records import ServedModel
from services.gateway.openai.responses import dialect
from services.gateway.openai.responses.schemas import ResponsesRequest
from services.gateway.openai.usage import usage_of_response, usage_of_stream_tail
from services.gateway.upstream import ResponseCut
from tests.unit.gateway.test_anthropic_messages import ScriptedUpstream, gateway

# The events of a real llama-server answer (max_output_tokens 2), ids shortened.
STREAM = [
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress"}}\n\n',
    b'event: response.output_item.added\ndata: {"type":"response.output_item.added","item":{"content":[],"id":"msg_1","role":"assistant","status":"in_progress","type":"message"}}\n\n',
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_1","delta":"Hello"}\n\n',
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_1","delta":"!"}\n\n',
    b'event: response.output_text.done\ndata: {"type":"response.output_text.done","item_id":"msg_1","text":"Hello!"}\n\n',
    b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed","output":[],'
    b'"usage":{"input_tokens":31,"output_tokens":2,"total_tokens":33}},"timings":{"prompt_n":31,"predicted_n":2}}\n\n',
]
BODY = {"model": "alpha", "input": "Hi", "stream": True}


def assert_openai_error(response, status: int, code: str) -> str:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and error["code"] == code
    return error["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"model": "alpha"}', "input"),
        (b'{"model": "alpha", "input": 3}', "input"),
        (b'{"input": "Hi"}', "model"),
        (b'{"model": "alpha", "input": "Hi", "stream": "yes"}', "stream"),
    ],
)
def test_bad_bodies_get_openai_400s(body: bytes, fragment: str) -> None:
    assert fragment in assert_openai_error(gateway().post("/v1/responses", content=body), 400, "invalid_request")


def test_unknown_model_and_no_ready_server_in_the_openai_shape() -> None:
    assert "alpha" in assert_openai_error(gateway().post("/v1/responses", json={"model": "beta", "input": "Hi"}), 404, "model_not_found")
    response = gateway(None, ServedModel("alpha", "/a", "starting")).post("/v1/responses", json={"model": "alpha", "input": "Hi"})
    assert_openai_error(response, 503, "model_not_ready")


def test_a_whole_stream_passes_unchanged() -> None:
    upstream = ScriptedUpstream(STREAM)
    with gateway(upstream).stream("POST", "/v1/responses", json=BODY) as response:
        assert response.status_code == 200 and response.headers["x-mesh-node"] == "me"
        assert response.read() == b"".join(STREAM)
    assert upstream.paths == ["/v1/responses"]


@pytest.mark.parametrize(
    ("script", "reason"),
    [([*STREAM[:3], ResponseCut("peer silent")], "peer silent"), (STREAM[:5], "response.completed")],
)
def test_a_cut_stream_ends_with_the_responses_error_event(script: list[bytes | Exception], reason: str) -> None:
    with gateway(ScriptedUpstream(script)).stream("POST", "/v1/responses", json=BODY) as response:
        events = [event for event in response.read().split(b"\n\n") if event]
    name, data = events[-1].split(b"\n")
    assert name == b"event: error"
    error = json.loads(data.removeprefix(b"data: "))
    assert error["type"] == "error" and error["code"] == "upstream_failed" and reason in error["message"]


@pytest.mark.parametrize(
    ("tail", "ended"),
    [
        (b"".join(STREAM), True),
        (b"".join(STREAM[:5]), False),
        (b'event: response.failed\ndata: {"type":"response.failed"}\n\n', True),
        (b'event: response.incomplete\ndata: {"type":"response.incomplete"}\n\n', True),
        (b'event: error\ndata: {"type":"error","message":"x"}\n\n', True),
        (b"data: [DONE]\n\n", False),  # the chat stream's end is not this API's
    ],
)
def test_a_stream_has_ended_after_a_terminal_event(tail: bytes, ended: bool) -> None:
    assert dialect.reached_its_end(tail) is ended


@pytest.mark.parametrize(
    ("raw", "usage"),
    [
        (b'{"object":"response","usage":{"input_tokens":31,"output_tokens":10,"total_tokens":41}}', (31, 10)),  # Responses API
        (b'{"type":"message","usage":{"input_tokens":7,"output_tokens":10}}', (7, 10)),  # Anthropic messages
        (b'{"usage":{"prompt_tokens":5,"completion_tokens":7}}', (5, 7)),  # chat, as before
    ],
)
def test_usage_is_read_under_each_api_s_names(raw: bytes, usage: tuple[int, int]) -> None:
    assert usage_of_response(raw) == usage


def test_usage_of_a_responses_stream_comes_from_its_last_event() -> None:
    assert usage_of_stream_tail(b"".join(STREAM)) == (31, 2)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"input": "Hi"}, {"input": "Hi"}, True),
        (
            {"input": [{"role": "user", "content": "Hi"}]},
            {"input": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "More"}]},
            True,
        ),
        ({"input": "Hi", "instructions": "one"}, {"input": "Hi", "instructions": "two"}, False),
        ({"input": "Hi", "prompt_cache_key": "k"}, {"input": "Bye", "prompt_cache_key": "k"}, True),
        ({"input": "Hi", "user": "u"}, {"input": "Hi", "user": "v"}, False),
    ],
)
def test_a_conversation_keeps_its_affinity_across_turns(a: dict, b: dict, same: bool) -> None:
    first, second = (ResponsesRequest.model_validate({"model": "m", **body}).affinity() for body in (a, b))
    assert (first == second) is same

"""Request bodies of the OpenAI and Anthropic APIs, and what an upstream answers: any body is a
request the routers can route (its affinity key computed) or a 400 in the API's own error shape,
never a 500; any upstream answer gives token counts, for Anthropic clients an error body, and a
stream's events are passed on whole, whatever its chunks."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel

from services.common.records import MeshView, NodeRecord
from services.gateway.anthropic import errors as anthropic_errors
from services.gateway.anthropic.messages.schemas import CountTokensRequest, MessagesRequest
from services.gateway.app import create_api_app
from services.gateway.errors import InvalidRequest
from services.gateway.metrics import GatewayMetrics
from services.gateway.mirror import MeshMirror
from services.gateway.openai.chat.schemas import ChatCompletionRequest
from services.gateway.openai.completions.schemas import CompletionRequest
from services.gateway.openai.protocol import parse_body
from services.gateway.openai.relay import Relay
from services.gateway.openai.responses.schemas import ResponsesRequest
from services.gateway.openai.sse import last_event_name, whole_events
from services.gateway.openai.usage import usage_of_response, usage_of_stream_tail
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import LocalUpstream
from tests.unit.fuzz.inputs import JSON_VALUES, deeply_nested, fuzz, mutated

pytestmark = pytest.mark.timeout(180)

# (path, schema, a valid body): every body-validating route of the API.
ROUTES = [
    ("/v1/chat/completions", ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", CompletionRequest, {"model": "m", "prompt": "hi"}),
    ("/v1/responses", ResponsesRequest, {"model": "m", "input": [{"role": "user", "content": "hi"}]}),
    ("/v1/messages", MessagesRequest, {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/messages/count_tokens", CountTokensRequest, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
]
SCHEMAS = st.sampled_from([schema for _, schema, _ in ROUTES])
ROUTED = st.sampled_from(ROUTES)
TEXT_OR_ANY = st.text(max_size=12) | JSON_VALUES
# Bodies near the valid ones: the checked fields of any type, and any other fields.
MESSAGES = st.lists(
    st.fixed_dictionaries({}, optional={"role": st.sampled_from(["user", "assistant", "system"]) | JSON_VALUES, "content": TEXT_OR_ANY}), max_size=3
)
BODIES = JSON_VALUES | st.fixed_dictionaries(
    {},
    optional={
        "model": TEXT_OR_ANY,
        "messages": MESSAGES | JSON_VALUES,
        "prompt": TEXT_OR_ANY | st.lists(st.integers(), max_size=3),
        "input": TEXT_OR_ANY | MESSAGES,
        "max_tokens": st.integers(-2, 10) | JSON_VALUES,
        "stream": st.booleans() | JSON_VALUES,
        "user": TEXT_OR_ANY,
        "metadata": st.fixed_dictionaries({}, optional={"user_id": TEXT_OR_ANY}) | JSON_VALUES,
        "system": TEXT_OR_ANY,
        "instructions": TEXT_OR_ANY,
        "prompt_cache_key": TEXT_OR_ANY,
    },
)


def raw_of(body: object) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def parsed(raw: bytes, schema: type[BaseModel]) -> None:
    try:
        request = parse_body(raw, schema)
    except InvalidRequest:
        return
    affinity = getattr(request, "affinity", None)
    assert affinity is None or isinstance(affinity(), str)


@fuzz(200)
@given(SCHEMAS, BODIES)
def test_any_json_body_is_a_request_or_invalid(schema: type[BaseModel], body: object) -> None:
    parsed(raw_of(body), schema)


@fuzz(200)
@given(ROUTED.flatmap(lambda route: st.tuples(st.just(route[1]), mutated(raw_of(route[2])))) | st.tuples(SCHEMAS, st.binary(max_size=80)))
@example((ChatCompletionRequest, deeply_nested()))  # json.loads raises RecursionError
@example((MessagesRequest, b'{"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "\\ud800"}]}'))  # a lone surrogate
def test_any_bytes_are_a_request_or_invalid(case: tuple[type[BaseModel], bytes]) -> None:
    parsed(case[1], case[0])


def api() -> TestClient:
    mirror = MeshMirror()
    mirror.view = MeshView(own=NodeRecord(node_id="me", name="me"))  # serves nothing: a valid request gets a 404
    metrics = GatewayMetrics()
    return TestClient(create_api_app(GatewaySettings(), mirror, Relay(mirror, metrics, LocalUpstream(1.0), None), metrics))


API = api()


@fuzz(60)
@given(ROUTED, BODIES | mutated(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'))
@example(ROUTES[0], deeply_nested())
@example(ROUTES[3], deeply_nested())
def test_any_body_gets_a_400_or_404_in_the_apis_shape(route: tuple[str, type[BaseModel], dict[str, object]], body: object) -> None:
    path = route[0]
    response = API.post(path, content=raw_of(body), headers={"content-type": "application/json"})
    assert response.status_code in (400, 404), response.text
    error = response.json()
    if anthropic_errors.owns(path):
        assert error["type"] == "error" and isinstance(error["error"]["message"], str)
    else:
        assert isinstance(error["error"]["message"], str) and error["error"]["code"] in ("invalid_request", "model_not_found")


# --- what upstreams answer ---------------------------------------------------------------------------

USAGES = st.fixed_dictionaries({}, optional={key: JSON_VALUES for key in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")})
ANSWERS = JSON_VALUES | st.fixed_dictionaries(
    {},
    optional={
        "usage": USAGES | JSON_VALUES,
        "timings": st.fixed_dictionaries({}, optional={"prompt_n": JSON_VALUES, "predicted_n": JSON_VALUES}) | JSON_VALUES,
    },
)


@fuzz(200)
@given(ANSWERS)
@example({"usage": {"prompt_tokens": [1]}})
@example({"usage": {"prompt_tokens": None, "completion_tokens": 1}})
@example({"timings": {"prompt_n": float("inf")}})
@example(deeply_nested())
def test_any_upstream_answer_gives_token_counts(answer: object) -> None:
    raw = raw_of(answer)
    for counts in (usage_of_response(raw), usage_of_stream_tail(b"data: " + raw + b"\n\n")):
        assert all(isinstance(n, int) for n in counts) and len(counts) == 2


@fuzz(200)
@given(st.integers(400, 599), st.binary(max_size=80) | st.builds(raw_of, JSON_VALUES))
@example(500, deeply_nested())
def test_any_upstream_error_becomes_an_anthropic_error(status: int, raw: bytes) -> None:
    body = json.loads(anthropic_errors.upstream_error(status, raw))
    assert body["type"] == "error" and isinstance(body["error"]["message"], str)


EVENT_BYTES = st.lists(
    st.sampled_from([b"data: {}", b"event: message_stop", b": ping", b"\n", b"\r\n", b"\n\n", b"\r\n\r\n"]) | st.binary(max_size=12), max_size=12
)


@fuzz(200)
@given(EVENT_BYTES, st.lists(st.integers(0, 40), max_size=6))
def test_a_stream_passes_whole_events_on_whatever_its_chunks(pieces: list[bytes], cuts: list[int]) -> None:
    """What the relay passes on is the upstream's bytes, in order, none lost or repeated; what it
    holds back is at most the start of one event."""
    stream = b"".join(pieces)
    chunks = [stream[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(stream)], strict=True)]
    passed, held = b"", b""
    for chunk in chunks:
        events, held = whole_events(held, chunk)
        passed += events
        assert b"\n\n" not in held and b"\r\n\r\n" not in held
    assert passed + held == stream
    assert isinstance(last_event_name(stream), str)

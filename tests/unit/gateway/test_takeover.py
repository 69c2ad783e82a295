"""A server that fails mid-answer, with another server of the model to take over (relay.py,
takeover.py): the client reads one unbroken stream. Two scripted llama-servers on this node
(ports 1 and 2) stand in for the mesh's servers; each records the requests it was sent."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest
from fastapi.testclient import TestClient

from services.common.records import MeshView, NodeRecord, ServedModel
from services.gateway.app import create_api_app
from services.gateway.metrics import GatewayMetrics
from services.gateway.mirror import MeshMirror
from services.gateway.openai.chat import dialect as chat
from services.gateway.openai.chat import router
from services.gateway.openai.continuation import Progress, Resume
from services.gateway.openai.relay import Dialect, Relay
from services.gateway.openai.takeover import KEEPALIVE, TakeoverPolicy
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import ResponseCut, UpstreamResponse, UpstreamUnavailable
from tests.unit.gateway.test_continuation import DONE, ENDING, HEAD, LATER, ROLE, START, TEXT_BLOCK, chat_chunk, datas, text_chunk, text_delta, usage_chunk

CUT = ResponseCut("tunnel cut mid-response: peer silent")
ASK = {"model": "alpha", "stream": True, "max_tokens": 6, "messages": [{"role": "user", "content": "Tell me a story."}]}


class Servers:
    """llama-servers by port, each answering with its script (an exception is raised where it stands)."""

    def __init__(
        self,
        scripts: Mapping[int, Sequence[bytes | Exception] | UpstreamUnavailable],
        content_type: str = "text/event-stream",
        statuses: Mapping[int, int] = {},
    ) -> None:
        self.scripts = scripts
        self.content_type = content_type
        self.statuses = statuses
        self.asked: dict[int, list[dict]] = {port: [] for port in scripts}
        self.open_now = 0

    async def open(self, port: int, path: str, raw: bytes, request_id: str) -> UpstreamResponse:
        self.asked[port].append(json.loads(raw))
        script = self.scripts[port]
        if isinstance(script, UpstreamUnavailable):
            raise script
        self.open_now += 1
        return UpstreamResponse(self.statuses.get(port, 200), self.content_type, self._chunks(script), self._close)

    async def _chunks(self, script: Sequence[bytes | Exception]) -> AsyncIterator[bytes]:
        for step in script:
            if isinstance(step, Exception):
                raise step
            yield step

    async def _close(self) -> None:
        self.open_now -= 1


def view(*ports: int) -> MeshView:
    return MeshView(own=NodeRecord(node_id="me", name="me", served=tuple(ServedModel("alpha", "/a", "ready", port) for port in ports)))


NO_WAIT = TakeoverPolicy(wait=0)


def gateway(servers: Servers, ports: tuple[int, ...], policy: TakeoverPolicy = NO_WAIT) -> tuple[TestClient, GatewayMetrics, MeshMirror]:
    mirror = MeshMirror()
    mirror.view = view(*ports)
    metrics = GatewayMetrics()
    relay = Relay(mirror, metrics, servers, None, takeover=policy)  # a scripted stand-in for llama-server
    return TestClient(create_api_app(GatewaySettings(), mirror, relay, metrics)), metrics, mirror


def stream(api: TestClient, path: str = "/v1/chat/completions", body: dict = ASK) -> bytes:
    with api.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        return response.read()


def counted(metrics: GatewayMetrics, outcome: str) -> float:
    return sum(s.value for family in metrics.takeovers.collect() for s in family.samples if s.name.endswith("_total") and s.labels["outcome"] == outcome)


def request_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict]]:
    return [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records if r.getMessage().startswith(("request", "takeover"))]


FIRST = [ROLE, chat_chunk({"content": "Once"}), chat_chunk({"content": " upon"})]
REST = [
    ROLE.replace(b"first", b"second"),
    chat_chunk({"content": " a"}, LATER),
    chat_chunk({"content": " time"}, LATER),
    chat_chunk({}, LATER, "length"),
    usage_chunk(12, 4, LATER),
    DONE,
]


@pytest.mark.parametrize("cut", [CUT, b'data: {"choices":[{"fin'], ids=["peer gone", "llama-server gone inside an event"])
def test_a_stream_cut_mid_answer_goes_on_on_another_server_as_one_stream(caplog: pytest.LogCaptureFixture, cut: bytes | Exception) -> None:
    caplog.set_level(logging.INFO)
    servers = Servers({1: [*FIRST, cut], 2: REST})
    api, metrics, _ = gateway(servers, (1, 2))
    chunks = datas(stream(api))
    assert chunks[-1] == "[DONE]" and not any("error" in chunk for chunk in chunks[:-1])
    deltas = [choice["delta"] for chunk in chunks[:-1] for choice in chunk["choices"]]
    assert deltas == [{"role": "assistant", "content": None}, {"content": "Once"}, {"content": " upon"}, {"content": " a"}, {"content": " time"}, {}]
    assert {chunk["id"] for chunk in chunks[:-1]} == {HEAD["id"]} and {chunk["created"] for chunk in chunks[:-1]} == {HEAD["created"]}
    assert chunks[-2]["usage"]["prompt_tokens"] == 10 and chunks[-2]["usage"]["completion_tokens"] == 6
    # The second server was asked for the rest of the same answer.
    (continuation,) = servers.asked[2]
    assert continuation["messages"][-1] == {"role": "assistant", "content": "Once upon"} and continuation["max_tokens"] == 4
    assert counted(metrics, "resumed") == 1 and servers.open_now == 0
    lines = request_lines(caplog)
    assert [message for message, _ in lines] == ["takeover", "request done"]
    assert lines[0][1]["tokens"] == 2 and lines[1][1]["takeovers"] == 1 and lines[1][1]["completion_tokens"] == 6


def test_a_completion_stream_goes_on_after_its_prompt() -> None:
    first = [text_chunk("Paris"), text_chunk(",")]
    rest = [text_chunk(" the", LATER), text_chunk("", LATER, "length"), DONE]
    servers = Servers({1: [*first, CUT], 2: rest})
    api, _, _ = gateway(servers, (1, 2))
    chunks = datas(stream(api, "/v1/completions", {"model": "alpha", "stream": True, "prompt": "The capital of France is", "max_tokens": 4}))
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks[:-1]) == "Paris, the" and chunks[-1] == "[DONE]"
    assert servers.asked[2][0]["prompt"] == {"prompt_string": ["The capital of France is", "Paris,"]} and servers.asked[2][0]["max_tokens"] == 2


def test_an_anthropic_message_goes_on_on_another_server() -> None:
    servers = Servers({1: [START, TEXT_BLOCK, text_delta("Once"), CUT], 2: [START.replace(b"first", b"second"), TEXT_BLOCK, text_delta(" upon"), *ENDING]})
    api, _, _ = gateway(servers, (1, 2))
    body = {"model": "alpha", "stream": True, "max_tokens": 2, "messages": [{"role": "user", "content": "Tell me a story."}]}
    events = datas(stream(api, "/v1/messages", body))
    assert [event["type"] for event in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["id"] == "msg-first" and events[-2]["usage"]["output_tokens"] == 3
    assert servers.asked[2][0]["messages"][-1] == {"role": "assistant", "content": "Once"} and servers.asked[2][0]["max_tokens"] == 1


def test_takeovers_are_bounded_then_the_stream_ends_with_the_error_event(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    servers = Servers({1: [*FIRST, CUT], 2: [chat_chunk({"content": " a"}, LATER), CUT], 3: REST})
    api, metrics, _ = gateway(servers, (1, 2, 3), TakeoverPolicy(limit=1, wait=0))
    chunks = datas(stream(api))
    assert chunks[-1] == "[DONE]" and "error" in chunks[-2]
    assert "bound of 1 takeovers" in chunks[-2]["error"]["message"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-2]) == "Once upon a"
    assert servers.asked[3] == [] and counted(metrics, "resumed") == 1 and counted(metrics, "failed") == 1
    assert [message for message, _ in request_lines(caplog)] == ["takeover", "takeover failed", "request failed"]


def test_a_server_that_fails_before_answering_the_continuation_is_passed_over() -> None:
    servers = Servers({1: [*FIRST, CUT], 2: UpstreamUnavailable("llama-server is not answering"), 3: REST})
    api, _, _ = gateway(servers, (1, 2, 3))
    chunks = datas(stream(api))
    assert chunks[-1] == "[DONE]" and "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c["choices"]) == "Once upon a time"


def test_a_refused_continuation_ends_the_stream_at_once_with_the_error_event() -> None:
    error = json.dumps({"error": {"code": 400, "message": "Cannot have 2 or more assistant messages", "type": "invalid_request_error"}}).encode()
    servers = Servers({1: [*FIRST, CUT], 2: [error], 3: REST}, statuses={2: 400})
    api, metrics, _ = gateway(servers, (1, 2, 3), TakeoverPolicy(wait=30))
    chunks = datas(stream(api))
    assert chunks[-1] == "[DONE]" and "refused the continuation (400)" in chunks[-2]["error"]["message"]
    assert servers.asked[3] == [] and counted(metrics, "failed") == 1 and servers.open_now == 0


def test_with_no_other_server_the_stream_waits_for_one_with_keepalives() -> None:
    servers = Servers({1: [*FIRST, CUT], 2: REST})
    api, _, mirror = gateway(servers, (1,), TakeoverPolicy(wait=30))
    # A standby becomes ready a moment after the cut.
    threading.Timer(0.5, lambda: setattr(mirror, "view", view(1, 2))).start()
    body = stream(api)
    assert KEEPALIVE in body
    chunks = datas(body)
    assert chunks[-1] == "[DONE]" and "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if isinstance(c, dict) and c["choices"]) == (
        "Once upon a time"
    )


def test_a_healthy_stream_is_never_read_for_a_takeover(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean path: the events pass as they came, and nothing parses them."""

    def boom(sent: bytes) -> Progress:
        raise AssertionError("a healthy stream was parsed")

    monkeypatch.setattr(router, "CHAT", Dialect(resume=Resume(boom, chat.request, chat.rewriter)))
    whole = [*FIRST, chat_chunk({}, finish="stop"), DONE]
    api, _, _ = gateway(Servers({1: whole}), (1,))
    assert stream(api) == b"".join(whole)


def test_a_non_streamed_answer_cut_mid_body_is_asked_again_of_another_server(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    answer = json.dumps({"choices": [{"message": {"content": "Once upon a time"}}], "usage": {"prompt_tokens": 10, "completion_tokens": 4}}).encode()
    servers = Servers({1: [answer[:20], CUT], 2: [answer]}, "application/json")
    api, metrics, _ = gateway(servers, (1, 2))
    response = api.post("/v1/chat/completions", json=ASK | {"stream": False})
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "Once upon a time"
    assert servers.asked[2] == [ASK | {"stream": False}]  # the same request, whole
    assert counted(metrics, "retried") == 1
    assert [message for message, _ in request_lines(caplog)] == ["takeover", "request done"]

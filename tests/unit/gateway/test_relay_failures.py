"""A response that fails after its first byte (relay.py) where no other server can take it over
(the only one failed, and the relay does not wait for another): a cut stream ends with an OpenAI
error event and [DONE], a cut body is a 503 error, and the gateway logs and counts either as
failed. The upstream is a script of chunks standing in for llama-server or a peer's tunnel;
test_takeover.py has the answers that another server takes over."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
from fastapi.testclient import TestClient

from services.common.records import MeshView, NodeRecord, ServedModel
from services.gateway.app import create_api_app
from services.gateway.metrics import GatewayMetrics
from services.gateway.mirror import MeshMirror
from services.gateway.openai.relay import Relay
from services.gateway.openai.takeover import TakeoverPolicy
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import ResponseCut, UpstreamResponse

EVENTS = [b'data: {"choices": [{"delta": {"content": "%d"}}]}\n\n' % n for n in range(3)]
DONE = b"data: [DONE]\n\n"
CUT = ResponseCut("tunnel cut mid-response: peer silent")


class ScriptedUpstream:
    """Answers every request with the given chunks; an exception in the script is raised there."""

    def __init__(self, script: list[bytes | Exception], content_type: str = "text/event-stream") -> None:
        self.script = script
        self.content_type = content_type
        self.closed = 0

    async def open(self, port: int, path: str, raw: bytes, request_id: str) -> UpstreamResponse:
        return UpstreamResponse(200, self.content_type, self._chunks(), self._close)

    async def _chunks(self) -> AsyncIterator[bytes]:
        for step in self.script:
            if isinstance(step, Exception):
                raise step
            yield step

    async def _close(self) -> None:
        self.closed += 1


def gateway(upstream: ScriptedUpstream) -> tuple[TestClient, GatewayMetrics]:
    mirror = MeshMirror()
    mirror.view = MeshView(own=NodeRecord(node_id="me", name="me", served=(ServedModel("alpha", "/a", "ready", 1),)))
    metrics = GatewayMetrics()
    relay = Relay(mirror, metrics, upstream, None, takeover=TakeoverPolicy(wait=0))
    return TestClient(create_api_app(GatewaySettings(), mirror, relay, metrics)), metrics


def stream(api: TestClient) -> tuple[int, bytes]:
    with api.stream("POST", "/v1/chat/completions", json={"model": "alpha", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as response:
        return response.status_code, response.read()


def errors(metrics: GatewayMetrics) -> float:
    return sum(
        sample.value for family in metrics.errors.collect() for sample in family.samples if sample.name.endswith("_total") and sample.labels["reason"] == "cut"
    )


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict]]:
    return [(record.getMessage(), getattr(record, "fields", {})) for record in caplog.records if record.name.endswith("relay")]


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ([*EVENTS, CUT], "peer silent"),  # the serving node went away
        (EVENTS, "without data: [DONE]"),  # a local llama-server killed between two events
        ([*EVENTS, EVENTS[0][:20], CUT], "peer silent"),  # cut inside an event: its half is not passed on
    ],
)
def test_a_cut_stream_ends_with_an_error_event_and_done_and_is_counted_failed(
    caplog: pytest.LogCaptureFixture, script: list[bytes | Exception], reason: str
) -> None:
    caplog.set_level(logging.INFO)
    upstream = ScriptedUpstream(script)
    api, metrics = gateway(upstream)
    status, body = stream(api)
    assert status == 200  # the head went out with the first byte
    events = [event for event in body.split(b"\n\n") if event]
    assert [event + b"\n\n" for event in events[:3]] == EVENTS
    error = json.loads(events[3].removeprefix(b"data: "))["error"]
    assert set(error) == {"message", "type", "code"} and reason in error["message"]
    assert events[4:] == [b"data: [DONE]"]
    assert errors(metrics) == 1 and upstream.closed == 1
    ((message, fields),) = [(m, f) for m, f in logged(caplog) if m.startswith("request")]
    assert message == "request failed" and reason in fields["reason"] and "status" not in fields


def test_a_finished_stream_passes_unchanged_and_counts_as_done(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    api, metrics = gateway(ScriptedUpstream([*EVENTS, DONE]))
    assert stream(api) == (200, b"".join(EVENTS) + DONE)
    assert errors(metrics) == 0
    assert [(m, f["status"]) for m, f in logged(caplog) if m.startswith("request")] == [("request done", 200)]


def test_a_cut_body_is_a_503_error_not_a_200(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    api, metrics = gateway(ScriptedUpstream([b'{"choices": [{"message": {"con', CUT], "application/json"))
    response = api.post("/v1/chat/completions", json={"model": "alpha", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 503
    assert set(response.json()["error"]) == {"message", "type", "code"} and "peer silent" in response.json()["error"]["message"]
    assert errors(metrics) == 1
    assert [m for m, _ in logged(caplog) if m.startswith("request")] == ["request failed"]
    statuses = [s.labels["status"] for family in metrics.requests.collect() for s in family.samples if s.name.endswith("_total")]
    assert statuses == ["503"]


class SilentUpstream(ScriptedUpstream):
    """An upstream whose first chunk never comes (a peer still thinking)."""

    async def _chunks(self) -> AsyncIterator[bytes]:
        import asyncio

        await asyncio.Event().wait()
        yield b""


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_a_client_that_leaves_before_the_first_chunk_releases_the_upstream(spec_version: str, caplog: pytest.LogCaptureFixture) -> None:
    """Starlette never starts the body iterator then: the response itself must close the upstream
    (else a peer serving it waits for credit forever, holding its llama-server slot)."""
    import asyncio

    upstream = SilentUpstream([])
    mirror = MeshMirror()
    mirror.view = MeshView(own=NodeRecord(node_id="me", name="me", served=(ServedModel("alpha", "/a", "ready", 1),)))
    relay = Relay(mirror, GatewayMetrics(), upstream, None)

    async def leave_at_once() -> None:
        response = await relay.forward("/v1/chat/completions", "alpha", True, b"{}")
        assert relay.in_flight["me"] == 1

        async def receive() -> dict:
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if spec_version >= "2.4":
                raise OSError("client gone")  # how a 2.4 server reports a disconnect: the send fails

        scope = {"type": "http", "asgi": {"spec_version": spec_version}, "method": "POST"}
        try:
            await asyncio.wait_for(response(scope, receive, send), 5)
        except Exception:  # noqa: BLE001 - Starlette's ClientDisconnect under 2.4: the client is gone either way
            pass

    with caplog.at_level(logging.INFO):
        asyncio.run(leave_at_once())
    assert upstream.closed == 1
    assert relay.in_flight["me"] == 0
    done = [record for record in caplog.records if record.getMessage() == "request done"]
    assert len(done) == 1 and done[0].fields["client_left"] is True

"""Stream ends (openai/sse.py): whole events only, a cut told apart from a finished stream, and the
error that ends a cut one in the OpenAI shape."""

from __future__ import annotations

import json

import pytest

from services.gateway.openai import sse

A, B = b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n'


@pytest.mark.parametrize(
    ("pending", "chunk", "now", "held"),
    [
        (b"", A + B, A + B, b""),  # llama-server's usual chunk: whole events, nothing waits
        (b"", A + B[:5], A, B[:5]),  # a chunk that ends inside an event holds that event back
        (B[:5], B[5:], B, b""),  # ... until its end arrives
        (b"", B[:5], b"", B[:5]),
        (b"", b'data: {"n": 1}\r\n\r\ndata: {', b'data: {"n": 1}\r\n\r\n', b"data: {"),  # CRLF events
        (b"", b"", b"", b""),
    ],
)
def test_only_whole_events_pass(pending: bytes, chunk: bytes, now: bytes, held: bytes) -> None:
    assert sse.whole_events(pending, chunk) == (now, held)


def test_a_stream_without_event_ends_is_not_held_without_limit() -> None:
    blob = b"x" * (sse.LONGEST_HELD + 1)
    assert sse.whole_events(b"", blob) == (blob, b"")


@pytest.mark.parametrize(
    ("tail", "ended"),
    [
        (A + b"data: [DONE]\n\n", True),
        (A + b"data: [DONE]", True),
        (A + b"data: [DONE]\r\n\r\n", True),
        (A, False),  # the killed server's last token: no end
        (b"", False),
        (A + b"data: [DO", False),
        (b"data: [DONE]\n\n" + A, False),
    ],
)
def test_a_stream_has_ended_only_with_done_last(tail: bytes, ended: bool) -> None:
    assert sse.reached_its_end(tail) is ended


def test_a_cut_stream_ends_with_an_openai_error_event_then_done() -> None:
    events = [event for event in sse.cut_stream_end("server gone").split(b"\n\n") if event]
    assert len(events) == 2 and events[1] == sse.DONE
    assert json.loads(events[0].removeprefix(b"data: ")) == {"error": {"message": "server gone", "type": "server_error", "code": "upstream_failed"}}

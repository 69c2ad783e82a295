"""Server-sent event streams as llama-server and OpenAI write them: whether one reached its own
end, and the events that end one that did not.

Pure bytes in, bytes or a verdict out; relaying the stream is relay.py's. An OpenAI stream
(chat and completions, llama-server's included) ends with `data: [DONE]`: without it a client's
SDK would still take the stream's end for a finished answer, so a stream that stops short must
say so itself, in the OpenAI error shape, and then end the way clients expect. Only whole events
are passed on, so that a cut inside an event cannot leave half a JSON object for the client's
parser to choke on before it reaches our error event.
"""

from __future__ import annotations

import json

DONE = b"data: [DONE]"
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n")
LONGEST_HELD = 1 << 20  # bytes: no real event is this long; past it the stream is passed on as is


def whole_events(pending: bytes, chunk: bytes) -> tuple[bytes, bytes]:
    """(the whole events to pass on now, the start of an event to hold until its end arrives).

    `pending` is what the last call held back; llama-server writes whole events, so it is
    almost always empty and nothing waits."""
    if not pending and chunk.endswith(_EVENT_ENDS):
        return chunk, b""  # the usual case, once per token: no copy, no search
    data = pending + chunk
    cut = 0
    for end in _EVENT_ENDS:
        at = data.rfind(end)
        if at >= 0:
            cut = max(cut, at + len(end))
    if len(data) - cut > LONGEST_HELD:
        return data, b""  # not an event stream after all: holding it would hold it all
    return data[:cut], data[cut:]


def reached_its_end(tail: bytes) -> bool:
    """True when the stream's last event is `data: [DONE]` (`tail`: its last bytes)."""
    return tail.rstrip().endswith(DONE)


def error_event(message: str, code: str = "upstream_failed") -> bytes:
    body = {"error": {"message": message, "type": "server_error", "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def cut_stream_end(message: str) -> bytes:
    """What a stream that stopped short ends with: an OpenAI error event, then `[DONE]`."""
    return error_event(message) + DONE + b"\n\n"


def last_event_name(tail: bytes) -> str:
    """The `event:` name of the stream's last event ('' when it names none, as OpenAI chat's do).

    Comment blocks (`:` keep-alive pings) are not events and are skipped."""
    for block in reversed(tail.replace(b"\r\n", b"\n").split(b"\n\n")):
        lines = [line for line in block.split(b"\n") if line and not line.startswith(b":")]
        if lines:
            names = [line[len(b"event:") :].strip() for line in lines if line.startswith(b"event:")]
            return names[-1].decode("utf-8", "replace") if names else ""
    return ""

"""How a Responses API stream ends, and how the gateway ends one that was cut short.

Pure bytes in, bytes or a verdict out. llama-server writes the Responses API's named events
(response.created … response.completed) and sends no `data: [DONE]`; a stream whose last event is
not a terminal one was cut, and ends with the API's own `error` event so that the client does not
take the text so far for a whole answer.
"""

from __future__ import annotations

import json

from services.gateway.openai.relay import Dialect
from services.gateway.openai.sse import last_event_name

ENDS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})


def reached_its_end(tail: bytes) -> bool:
    return last_event_name(tail) in ENDS


def cut_stream_end(message: str) -> bytes:
    event = {"type": "error", "code": "upstream_failed", "message": message, "param": None}
    return b"event: error\ndata: " + json.dumps(event).encode() + b"\n\n"


RESPONSES = Dialect(reached_its_end=reached_its_end, cut_stream_end=cut_stream_end, last_event="event: response.completed")

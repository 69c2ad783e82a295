"""How an Anthropic Messages stream ends, and how the gateway ends one that was cut short.

Pure bytes in, bytes or a verdict out. llama-server writes Anthropic's named events
(message_start … message_stop) and ends a stream after `message_stop`, or after an `error` event;
a stream that stops anywhere else was cut, and the client must see an error event rather than
take the text so far for a whole answer.
"""

from __future__ import annotations

import json

from services.gateway.anthropic.errors import error_body, upstream_error
from services.gateway.openai.relay import Dialect
from services.gateway.openai.sse import last_event_name

ENDS = frozenset({"message_stop", "error"})


def reached_its_end(tail: bytes) -> bool:
    return last_event_name(tail) in ENDS


def cut_stream_end(message: str) -> bytes:
    return b"event: error\ndata: " + json.dumps(error_body(500, message)).encode() + b"\n\n"


MESSAGES = Dialect(reached_its_end=reached_its_end, cut_stream_end=cut_stream_end, error_body=upstream_error, last_event="event: message_stop")

"""How an Anthropic Messages stream ends, how the gateway ends one that was cut short, and how
another server continues one (openai/continuation.py says why and when).

Pure bytes in, bytes or a verdict out. llama-server writes Anthropic's named events
(message_start … message_stop) and ends a stream after `message_stop`, or after an `error` event;
a stream that stops anywhere else was cut, and the client must see an error event rather than
take the text so far for a whole answer.

A continuation is the original request with the text so far as a trailing assistant message (the
API's own prefill, which llama-server continues as is) and max_tokens lowered by the tokens
already sent. Its message_start is dropped (the client has one, with the input tokens), and so is
the start of the text block the client already has open, and the prefix its text repeats; its
message_delta counts the whole answer's output tokens. Answers with thinking or tool use are not
continued.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from services.gateway.anthropic.errors import error_body, upstream_error
from services.gateway.openai.continuation import CannotResume, Event, Progress, Resume, encode, json_events, request_body, rewriter_of, spend, with_prefix
from services.gateway.openai.relay import Dialect
from services.gateway.openai.sse import last_event_name

ENDS = frozenset({"message_stop", "error"})


def reached_its_end(tail: bytes) -> bool:
    return last_event_name(tail) in ENDS


def cut_stream_end(message: str) -> bytes:
    return b"event: error\ndata: " + json.dumps(error_body(500, message)).encode() + b"\n\n"


def progress(sent: bytes) -> Progress:
    text: list[str] = []
    opened, block = False, None
    for event, data in json_events(sent):
        kind = data.get("type", event.name)
        if kind == "message_start":
            opened = True
        elif kind == "content_block_start":
            if (data.get("content_block") or {}).get("type") != "text":
                raise CannotResume("an answer with thinking or tool use is not continued")
            block = data.get("index")
        elif kind == "content_block_delta":
            if (delta := data.get("delta") or {}).get("type") != "text_delta":
                raise CannotResume("an answer with thinking or tool use is not continued")
            if isinstance(piece := delta.get("text"), str) and piece:
                text.append(piece)
        elif kind == "content_block_stop":
            block = None
        elif kind in ("message_delta", "message_stop"):
            raise CannotResume("the answer had ended")
        elif kind == "error":
            raise CannotResume("the stream carried an error")
    return Progress("".join(text), len(text), opened=opened, open_block=block if isinstance(block, int) else None)


def request(raw: bytes, progress: Progress) -> bytes:
    body = request_body(raw)
    with_prefix(body, progress.text)
    spend(body, ("max_tokens",), progress.tokens)
    return json.dumps(body).encode()


def rewriter(progress: Progress) -> Callable[[bytes], bytes]:
    open_block = progress.open_block  # the client's open text block, until the continuation stops it
    # llama-server's Anthropic endpoint infers the prefill from the last message's role and begins
    # its text with it (continue_final_message does not reach it): the client has that text already.
    repeated = progress.text

    def rewrite_one(event: Event, data: dict[str, Any]) -> bytes:
        nonlocal open_block, repeated
        kind = data.get("type", event.name)
        if kind == "message_start" and progress.opened:
            return b""
        if kind == "content_block_start" and open_block is not None and data.get("index") == open_block:
            return b""
        before = b""
        if kind == "content_block_delta" and repeated and isinstance(text := (data.get("delta") or {}).get("text"), str):
            text, repeated = _unrepeated(text, repeated)
            return encode(data | {"delta": data["delta"] | {"text": text}}, event.name) if text else b""
        if kind == "content_block_stop" and data.get("index") == open_block:
            open_block = None
        elif kind == "message_delta":
            if open_block is not None:
                # The continuation wrote no text, so it stops no block: the client's must still be stopped.
                before, open_block = encode({"type": "content_block_stop", "index": open_block}, "content_block_stop"), None
            usage = data.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("output_tokens"), int):
                data = data | {"usage": usage | {"output_tokens": usage["output_tokens"] + progress.tokens}}
            return before + encode(data, event.name)
        return event.raw + b"\n\n"

    return rewriter_of(rewrite_one)


def _unrepeated(text: str, repeated: str) -> tuple[str, str]:
    """(the delta's text without the repeated prefix, what is left of the prefix to skip)."""
    if text.startswith(repeated):
        return text[len(repeated) :], ""
    if repeated.startswith(text):
        return "", repeated[len(text) :]
    return text, ""  # not a repetition after all: nothing more is skipped


MESSAGES = Dialect(
    reached_its_end=reached_its_end,
    cut_stream_end=cut_stream_end,
    error_body=upstream_error,
    last_event="event: message_stop",
    resume=Resume(progress, request, rewriter),
)

"""Continuing a streamed answer on another server after its own died mid-answer (a takeover):
what the client has of the answer, the request that continues it, and the continuation's events
rewritten so that the client reads one stream.

Pure bytes in, bytes out; when and where to take over is the relay's (relay.py). Nothing here runs
while a stream is healthy: the relay only keeps the raw events it passed on, and an API's Resume
reads them once, when a server has died. Each API (chat, completions, Anthropic messages) says in
its own dialect module how its answer is read, continued and rewritten; this module holds what
they share: splitting and encoding events, and spending the token budget.

The continuation asks llama-server for the rest of the same answer: the original request with the
text so far as the assistant's prefix (llama-server continues a trailing assistant message as is,
without the template's end of turn) or as the end of the prompt. At temperature 0 the joined
answer is the uninterrupted one as long as the text so far reads back as the tokens it came from,
which holds for what a model writes in practice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The fields every event of an OpenAI stream repeats: the continuation's events get the client's.
HEAD_FIELDS = ("id", "created", "model", "system_fingerprint")


class CannotResume(Exception):
    """This answer cannot be continued elsewhere (the reason says why): the stream ends with the API's error event."""


@dataclass(frozen=True)
class Progress:
    """What the client has of the answer when its server died."""

    text: str = ""  # the answer's text so far
    tokens: int = 0  # the tokens it took: llama-server streams one token an event
    head: Mapping[str, Any] = field(default_factory=dict)  # what the client's events repeat (HEAD_FIELDS)
    opened: bool = False  # the client has the stream's opening (chat's role delta; Anthropic's message_start)
    open_block: int | None = None  # Anthropic: the index of the text block the client has open


@dataclass(frozen=True)
class Resume:
    """How one API's streamed answer is continued on another server; each function is pure."""

    progress: Callable[[bytes], Progress]  # the events the client has -> what it has of the answer (or CannotResume)
    request: Callable[[bytes, Progress], bytes]  # the original request body -> the continuation's (or CannotResume)
    rewriter: Callable[[Progress], Callable[[bytes], bytes]]  # -> what turns the continuation's whole events into the client's


@dataclass(frozen=True)
class Event:
    name: str  # the `event:` name; "" when it names none (OpenAI's)
    data: bytes  # the `data:` payload; b"" for a comment
    raw: bytes  # the event as it came, without its blank line


def events_of(blob: bytes) -> Iterator[Event]:
    """The events in whole events' bytes (as sse.whole_events passes them on)."""
    for block in blob.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block:
            continue
        name, data = "", []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[len(b"event:") :].strip().decode("utf-8", "replace")
            elif line.startswith(b"data:"):
                data.append(line[len(b"data:") :].removeprefix(b" "))
        yield Event(name, b"\n".join(data), block)


def json_of(event: Event) -> dict[str, Any] | None:
    """The event's data as a JSON object; None for anything else ([DONE], comments)."""
    if not event.data.startswith(b"{"):
        return None
    try:
        data = json.loads(event.data)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def json_events(blob: bytes) -> Iterator[tuple[Event, dict[str, Any]]]:
    for event in events_of(blob):
        data = json_of(event)
        if data is not None:
            yield event, data


def encode(data: Mapping[str, Any], name: str = "") -> bytes:
    """One event as llama-server writes it (compact JSON, text as UTF-8)."""
    line = b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return (f"event: {name}\n".encode() if name else b"") + line + b"\n\n"


def head_of(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in HEAD_FIELDS if key in data}


def with_head(data: dict[str, Any], head: Mapping[str, Any]) -> dict[str, Any]:
    """The continuation's event, naming the client's stream: the head fields it carries get the client's values."""
    return data | {key: value for key, value in head.items() if key in data}


def request_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise CannotResume("the request is not JSON") from None
    if not isinstance(body, dict):
        raise CannotResume("the request is not a JSON object")
    if body.get("n", 1) != 1:
        raise CannotResume("it asked for several answers")
    return body


def with_prefix(body: dict[str, Any], text: str) -> None:
    """End the request's messages with the text so far as the assistant's prefix (a chat or
    Anthropic request). A trailing assistant message of the client's own is a prefix llama-server
    was already continuing: unless the request asked for that explicitly (continue_final_message),
    llama-server's stream began by repeating it, so the client's text starts with it already."""
    messages = body.get("messages")
    if not text:
        return
    if not isinstance(messages, list) or not messages:
        raise CannotResume("the request has no messages")
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") == "assistant":
        own = last.get("content")
        if not isinstance(own, str):
            raise CannotResume("the client's own assistant prefix is not text")
        repeated = not body.get("continue_final_message") and text.startswith(own)
        body["messages"] = [*messages[:-1], last | {"content": text if repeated else own + text}]
    else:
        body["messages"] = [*messages, {"role": "assistant", "content": text}]


def spend(body: dict[str, Any], keys: Sequence[str], tokens: int) -> None:
    """Lower the request's token budget (whichever of `keys` it sets) by what was already generated."""
    for key in keys:
        budget = body.get(key)
        if isinstance(budget, int) and not isinstance(budget, bool) and budget >= 0:
            if budget <= tokens:
                # llama-server generates at least one token whatever the budget: the answer had ended.
                raise CannotResume(f"its {key} ({budget}) was spent")
            body[key] = budget - tokens


def counted(usage: Mapping[str, Any], tokens: int, prompt_key: str, completion_key: str) -> dict[str, Any]:
    """The continuation's usage as the whole answer's: the text so far was prompt to it, and is completion to the client."""
    prompt, completion = usage.get(prompt_key), usage.get(completion_key)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return dict(usage)
    return dict(usage) | {prompt_key: max(0, prompt - tokens), completion_key: completion + tokens}


def rewriter_of(rewrite_one: Callable[[Event, dict[str, Any]], bytes]) -> Callable[[bytes], bytes]:
    """A rewriter of whole events that passes non-JSON events ([DONE], comments) unchanged and
    hands each JSON event to `rewrite_one` (which returns b"" to drop it)."""

    def rewrite(blob: bytes) -> bytes:
        out = []
        for event in events_of(blob):
            data = json_of(event)
            out.append(event.raw + b"\n\n" if data is None else rewrite_one(event, data))
        return b"".join(out)

    return rewrite

"""How a chat completion's stream is continued on another server (continuation.py says why and when).

Pure. The continuation is the original request with the text so far as a trailing assistant
message that it asks llama-server to continue (continue_final_message: the prompt ends inside the
assistant's turn as is, and the stream does not repeat the prefix), with max_tokens lowered by the
tokens already sent.
Its events get the client's id, created and model; its opening role delta is dropped (the client
has one), and its usage counts the whole answer. Answers with tool calls or reasoning are not
continued: llama-server cannot continue an assistant message that calls tools.
"""

from __future__ import annotations

import json
from typing import Any

from services.gateway.openai.continuation import (
    CannotResume,
    Event,
    Progress,
    Resume,
    counted,
    encode,
    head_of,
    json_events,
    request_body,
    rewriter_of,
    spend,
    with_head,
    with_prefix,
)
from services.gateway.openai.relay import Dialect

BUDGETS = ("max_completion_tokens", "max_tokens", "n_predict")  # llama-server reads any of them


def progress(sent: bytes) -> Progress:
    text: list[str] = []
    head: dict[str, Any] = {}
    opened = False
    for _, data in json_events(sent):
        if "error" in data:
            raise CannotResume("the stream carried an error")
        head = head or head_of(data)
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                raise CannotResume("the stream has several choices")
            if choice.get("finish_reason"):
                raise CannotResume("the answer had ended")
            delta = choice.get("delta") or {}
            if delta.get("tool_calls") or delta.get("reasoning_content"):
                raise CannotResume("an answer with tool calls or reasoning is not continued")
            opened = opened or "role" in delta
            if isinstance(content := delta.get("content"), str) and content:
                text.append(content)
    return Progress("".join(text), len(text), head, opened)


def request(raw: bytes, progress: Progress) -> bytes:
    body = request_body(raw)
    with_prefix(body, progress.text)
    if progress.text:
        # Asked for explicitly, a continuation's stream does not repeat the prefix (a prefill that
        # llama-server only infers from the last message's role is repeated in its first delta).
        body |= {"continue_final_message": True, "add_generation_prompt": False}
    spend(body, BUDGETS, progress.tokens)
    return json.dumps(body).encode()


def rewriter(progress: Progress):
    def rewrite_one(event: Event, data: dict[str, Any]) -> bytes:
        if "error" in data:
            return event.raw + b"\n\n"
        data = with_head(data, progress.head)
        choices = data.get("choices")
        if progress.opened and isinstance(choices, list) and choices:
            kept = [choice for choice in (_without_role(choice) for choice in choices) if choice is not None]
            if not kept and "usage" not in data:
                return b""
            data["choices"] = kept
        if isinstance(data.get("usage"), dict):
            data["usage"] = counted(data["usage"], progress.tokens, "prompt_tokens", "completion_tokens")
        return encode(data)

    return rewriter_of(rewrite_one)


def _without_role(choice: Any) -> Any:
    """The choice without the role delta the client already has; None when nothing else is left."""
    if not isinstance(choice, dict) or not isinstance(choice.get("delta"), dict) or "role" not in choice["delta"]:
        return choice
    delta = {key: value for key, value in choice["delta"].items() if key != "role"}
    if choice.get("finish_reason") is None and all(value is None for value in delta.values()):
        return None
    return choice | {"delta": delta}


CHAT = Dialect(resume=Resume(progress, request, rewriter))

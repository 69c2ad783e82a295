"""How a completion's stream is continued on another server (continuation.py says why and when).

Pure. The continuation's prompt is the original prompt followed by the text so far, as two parts
that llama-server tokenizes one by one (a `prompt_string` list, or token ids followed by the
text): the prompt reads as exactly the tokens it read as before, whatever its last characters, and
the text so far as the tokens it came from. max_tokens is lowered by the tokens already sent, the
events get the client's id, created and model, and the usage counts the whole answer. A batch of
prompts is not continued.
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
)
from services.gateway.openai.relay import Dialect

BUDGETS = ("max_tokens", "n_predict")  # llama-server reads either


def progress(sent: bytes) -> Progress:
    text: list[str] = []
    head: dict[str, Any] = {}
    for _, data in json_events(sent):
        if "error" in data:
            raise CannotResume("the stream carried an error")
        head = head or head_of(data)
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                raise CannotResume("the stream has several choices")
            if choice.get("finish_reason"):
                raise CannotResume("the answer had ended")
            if isinstance(piece := choice.get("text"), str) and piece:
                text.append(piece)
    return Progress("".join(text), len(text), head)


def continued_prompt(prompt: Any, text: str) -> Any:
    """The prompt followed by the text so far, each part tokenized on its own by llama-server."""
    if isinstance(prompt, str):
        return {"prompt_string": [prompt, text]}
    if isinstance(prompt, list) and prompt and all(isinstance(token, int) for token in prompt):
        return [*prompt, text]  # token ids then text: one prompt, the text tokenized without a BOS
    if isinstance(prompt, list) and len(prompt) == 1:
        return [continued_prompt(prompt[0], text)]  # a batch of one stays a batch of one
    raise CannotResume("a batch of prompts is not continued")


def request(raw: bytes, progress: Progress) -> bytes:
    body = request_body(raw)
    if progress.text:
        body["prompt"] = continued_prompt(body.get("prompt"), progress.text)
    spend(body, BUDGETS, progress.tokens)
    return json.dumps(body).encode()


def rewriter(progress: Progress):
    def rewrite_one(event: Event, data: dict[str, Any]) -> bytes:
        if "error" in data:
            return event.raw + b"\n\n"
        data = with_head(data, progress.head)
        if isinstance(data.get("usage"), dict):
            data["usage"] = counted(data["usage"], progress.tokens, "prompt_tokens", "completion_tokens")
        return encode(data)

    return rewriter_of(rewrite_one)


COMPLETIONS = Dialect(resume=Resume(progress, request, rewriter))

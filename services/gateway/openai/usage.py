"""Token counts from llama-server responses: pure parsing, no I/O."""

from __future__ import annotations

import json
from typing import Any


def usage_of(body: dict) -> tuple[int, int]:
    """(prompt, completion) tokens from a final response or stream chunk; zeros when absent."""
    usage = body.get("usage")
    if usage is None and isinstance(body.get("message"), dict):
        usage = body["message"].get("usage")  # Anthropic's message_start event
    if isinstance(usage, dict):
        # Chat's names, else input/output as the Responses and Anthropic APIs name them.
        return _count(usage.get("prompt_tokens", usage.get("input_tokens", 0))), _count(usage.get("completion_tokens", usage.get("output_tokens", 0)))
    timings = body.get("timings")
    if isinstance(timings, dict):
        return _count(timings.get("prompt_n", 0)), _count(timings.get("predicted_n", 0))
    return 0, 0


def _count(value: Any) -> int:
    """A token count as the upstream wrote it; 0 for one that is no finite number (null, a list)."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def usage_of_response(raw: bytes) -> tuple[int, int]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: arrays nested past Python's limit
        return 0, 0
    return usage_of(body) if isinstance(body, dict) else (0, 0)


def usage_of_stream_tail(tail: bytes) -> tuple[int, int]:
    """Usage from the last `data:` events that carry it. llama-server puts both counts in the final
    chunk (chat) or event (Responses API); an Anthropic stream has the input tokens in its first
    event (message_start, when the tail still holds it) and the output tokens in message_delta."""
    prompt = completion = 0
    for line in reversed(tail.split(b"\n")):
        if not line.startswith(b"data: {"):
            continue
        try:
            counts = usage_of(json.loads(line[len(b"data: ") :]))
        except (ValueError, RecursionError):
            # A line cut by the tail window (or nested past Python's limit): older events hold no usage anyway.
            break
        prompt, completion = prompt or counts[0], completion or counts[1]
        if prompt and completion:
            break
    return prompt, completion

"""Continuing a cut answer (openai/continuation.py and the chat and completions dialects): what the
client has, the request that continues it, and the continuation's events rewritten into the
client's stream. Events are written as the pinned llama-server writes them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.gateway.anthropic.messages import dialect as messages
from services.gateway.openai.chat import dialect as chat
from services.gateway.openai.completions import dialect as completions
from services.gateway.openai.continuation import CannotResume, Progress, events_of, json_of

HEAD = {"created": 100, "id": "chatcmpl-first", "model": "alpha", "system_fingerprint": "b1-abc"}
LATER = {"created": 107, "id": "chatcmpl-second", "model": "alpha", "system_fingerprint": "b1-abc"}


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def chat_chunk(delta: dict[str, Any], head: dict[str, Any] = HEAD, finish: str | None = None) -> bytes:
    return sse({"choices": [{"finish_reason": finish, "index": 0, "delta": delta}], **head, "object": "chat.completion.chunk"})


def text_chunk(text: str, head: dict[str, Any] = HEAD, finish: str | None = None) -> bytes:
    return sse({"choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}], **head, "object": "text_completion"})


def usage_chunk(prompt: int, completion: int, head: dict[str, Any] = HEAD) -> bytes:
    usage = {"completion_tokens": completion, "prompt_tokens": prompt, "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": 0}}
    return sse({"choices": [], **head, "object": "chat.completion.chunk", "usage": usage})


ROLE = chat_chunk({"role": "assistant", "content": None})
DONE = b"data: [DONE]\n\n"


def datas(blob: bytes) -> list[Any]:
    return [json_of(event) or event.data.decode() for event in events_of(blob)]


# --- what the client has ---


@pytest.mark.parametrize(
    ("sent", "progress"),
    [
        (b"", Progress()),
        (ROLE, Progress("", 0, HEAD, opened=True)),
        (ROLE + chat_chunk({"content": "Once"}) + chat_chunk({"content": " upon"}), Progress("Once upon", 2, HEAD, opened=True)),
        # Bytes as a chunk boundary may leave them (\r\n events, a keep-alive comment between).
        (ROLE.replace(b"\n\n", b"\r\n\r\n") + b": keep-alive\n\n" + chat_chunk({"content": "Hi"}), Progress("Hi", 1, HEAD, opened=True)),
    ],
)
def test_chat_progress_reads_the_text_and_head_the_client_has(sent: bytes, progress: Progress) -> None:
    assert chat.progress(sent) == progress


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        (ROLE + chat_chunk({"tool_calls": [{"index": 0, "function": {"name": "f"}}]}), "tool calls"),
        (ROLE + chat_chunk({"reasoning_content": "hmm"}), "reasoning"),
        (ROLE + chat_chunk({"content": "x"}, finish="stop"), "ended"),
        (ROLE + sse({"choices": [{"index": 1, "delta": {"content": "x"}}], **HEAD}), "several"),
        (ROLE + sse({"error": {"message": "boom"}}), "error"),
    ],
)
def test_chat_answers_that_cannot_be_continued_say_why(sent: bytes, why: str) -> None:
    with pytest.raises(CannotResume, match=why):
        chat.progress(sent)


def test_completions_progress_reads_the_text() -> None:
    sent = text_chunk("Paris") + text_chunk(",") + text_chunk(" the")
    assert completions.progress(sent) == Progress("Paris, the", 3, HEAD)
    with pytest.raises(CannotResume, match="ended"):
        completions.progress(sent + text_chunk(".", finish="length"))


# --- the continuation's request ---

USER = {"role": "user", "content": "Tell me a story."}


CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}  # else llama-server's stream repeats the prefix


@pytest.mark.parametrize(
    ("body", "progress", "continued"),
    [
        # The text so far becomes the assistant's prefix; the budget loses what was spent.
        (
            {"model": "alpha", "messages": [USER], "max_tokens": 40, "stream": True},
            Progress("Once upon", 2),
            {"model": "alpha", "messages": [USER, {"role": "assistant", "content": "Once upon"}], "max_tokens": 38, "stream": True, **CONTINUE},
        ),
        # The client's own prefix, which llama-server was continuing: its stream began by repeating it.
        (
            {"model": "alpha", "messages": [USER, {"role": "assistant", "content": "Once"}], "max_completion_tokens": 10, "n_predict": 12},
            Progress("Once upon", 1),
            {"model": "alpha", "messages": [USER, {"role": "assistant", "content": "Once upon"}], "max_completion_tokens": 9, "n_predict": 11, **CONTINUE},
        ),
        # ... unless the client asked for the continuation itself: then it grows by the text so far.
        (
            {"model": "alpha", "messages": [USER, {"role": "assistant", "content": "Once"}], **CONTINUE},
            Progress(" upon", 1),
            {"model": "alpha", "messages": [USER, {"role": "assistant", "content": "Once upon"}], **CONTINUE},
        ),
        # No budget stays no budget; nothing sent yet is the request as it was.
        ({"model": "alpha", "messages": [USER]}, Progress("A", 1), {"model": "alpha", "messages": [USER, {"role": "assistant", "content": "A"}], **CONTINUE}),
        ({"model": "alpha", "messages": [USER], "max_tokens": 5}, Progress(), {"model": "alpha", "messages": [USER], "max_tokens": 5}),
    ],
)
def test_a_chat_continuation_asks_for_the_rest_of_the_same_answer(body: dict, progress: Progress, continued: dict) -> None:
    assert json.loads(chat.request(json.dumps(body).encode(), progress)) == continued


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"model": "alpha", "messages": [USER], "max_tokens": 2}, "max_tokens"),  # spent: the answer had ended
        ({"model": "alpha", "messages": [USER], "n": 2}, "several answers"),
        ({"model": "alpha", "messages": [USER, {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}, "not text"),
    ],
)
def test_chat_requests_that_cannot_be_continued_say_why(body: dict, why: str) -> None:
    with pytest.raises(CannotResume, match=why):
        chat.request(json.dumps(body).encode(), Progress("Once upon", 2))


@pytest.mark.parametrize(
    ("prompt", "continued"),
    [
        # Two parts llama-server tokenizes one by one: the prompt reads as the same tokens whatever its end.
        ("The capital of France is ", {"prompt_string": ["The capital of France is ", "Paris"]}),
        ([1, 504, 3458], [1, 504, 3458, "Paris"]),  # token ids, then the text (tokenized without a BOS)
        (["Hi"], [{"prompt_string": ["Hi", "Paris"]}]),  # a batch of one stays one
        ([[1, 504]], [[1, 504, "Paris"]]),
    ],
)
def test_a_completion_continues_after_its_prompt(prompt: Any, continued: Any) -> None:
    body = {"model": "alpha", "prompt": prompt, "max_tokens": 16}
    assert json.loads(completions.request(json.dumps(body).encode(), Progress("Paris", 1))) == body | {"prompt": continued, "max_tokens": 15}


@pytest.mark.parametrize("prompt", [["a", "b"], [[1], [2]], None])
def test_a_batch_of_prompts_is_not_continued(prompt: Any) -> None:
    with pytest.raises(CannotResume):
        completions.request(json.dumps({"model": "alpha", "prompt": prompt}).encode(), Progress("Paris", 1))


# --- the continuation's events in the client's stream ---


def test_a_chat_continuation_reads_as_the_same_stream() -> None:
    progress = Progress("Once upon", 2, HEAD, opened=True)
    continuation = ROLE.replace(b"first", b"second") + chat_chunk({"content": " a"}, LATER) + chat_chunk({}, LATER, "length") + usage_chunk(12, 1, LATER) + DONE
    rewritten = chat.rewriter(progress)(continuation)
    events = datas(rewritten)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    # No second role delta; the client's id, created and model throughout.
    assert [chunk["choices"] for chunk in chunks] == [
        [{"finish_reason": None, "index": 0, "delta": {"content": " a"}}],
        [{"finish_reason": "length", "index": 0, "delta": {}}],
        [],
    ]
    assert all({key: chunk[key] for key in HEAD} == HEAD for chunk in chunks)
    # Usage of the whole answer: the text so far was prompt to the continuation and is completion to the client.
    assert chunks[-1]["usage"] | {"prompt_tokens_details": None} == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
        "prompt_tokens_details": None,
    }


def test_a_stream_cut_before_its_role_delta_gets_the_continuations() -> None:
    rewritten = chat.rewriter(Progress())(ROLE.replace(b"first", b"second") + chat_chunk({"content": "A"}, LATER))
    assert [chunk["choices"][0]["delta"] for chunk in datas(rewritten)] == [{"role": "assistant", "content": None}, {"content": "A"}]


def test_a_completion_continuation_reads_as_the_same_stream() -> None:
    head = {key: HEAD[key] for key in ("created", "id", "model")}
    later = {key: LATER[key] for key in ("created", "id", "model")}
    usage = {"completion_tokens": 4, "prompt_tokens": 9, "total_tokens": 13}
    continuation = text_chunk(" the", later) + sse({"choices": [{"text": "", "index": 0, "finish_reason": "length"}], **later, "usage": usage}) + DONE
    chunks = datas(completions.rewriter(Progress("Paris,", 2, head))(continuation))
    assert chunks[-1] == "[DONE]"
    assert [chunk["choices"][0]["text"] for chunk in chunks[:-1]] == [" the", ""]
    assert all(chunk["id"] == "chatcmpl-first" and chunk["created"] == 100 for chunk in chunks[:-1])
    assert chunks[1]["usage"] == {"completion_tokens": 6, "prompt_tokens": 7, "total_tokens": 13}


def test_an_error_from_the_continuation_passes_as_it_came() -> None:
    error = sse({"error": {"message": "boom", "type": "server_error", "code": 500}})
    assert chat.rewriter(Progress("x", 1, HEAD, opened=True))(error) == error


# --- Anthropic messages ---


def named(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + sse({"type": name, **data})


START = named("message_start", {"message": {"id": "msg-first", "model": "alpha", "usage": {"input_tokens": 7, "output_tokens": 0}}})
TEXT_BLOCK = named("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})


def text_delta(text: str) -> bytes:
    return named("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})


ENDING = [
    named("content_block_stop", {"index": 0}),
    named("message_delta", {"delta": {"stop_reason": "max_tokens", "stop_sequence": None}, "usage": {"output_tokens": 2}}),
    named("message_stop", {}),
]


def test_anthropic_progress_and_request() -> None:
    progress = messages.progress(START + TEXT_BLOCK + text_delta("Once") + text_delta(" upon"))
    assert progress == Progress("Once upon", 2, opened=True, open_block=0)
    body = {"model": "alpha", "max_tokens": 8, "messages": [USER], "stream": True}
    assert json.loads(messages.request(json.dumps(body).encode(), progress)) == body | {
        "max_tokens": 6,
        "messages": [USER, {"role": "assistant", "content": "Once upon"}],
    }
    thinking = named("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}})
    with pytest.raises(CannotResume, match="thinking"):
        messages.progress(START + thinking)


def test_an_anthropic_continuation_reads_as_the_same_message() -> None:
    progress = Progress("Once upon", 2, opened=True, open_block=0)
    continuation = START.replace(b"msg-first", b"msg-second") + TEXT_BLOCK + text_delta(" a") + text_delta(" time") + b"".join(ENDING)
    events = [(event.name, json_of(event)) for event in events_of(messages.rewriter(progress)(continuation))]
    # No second message_start or text block: the client's go on; output tokens of the whole answer.
    assert [name for name, _ in events] == ["content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert events[3][1] == {"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None}, "usage": {"output_tokens": 4}}


def test_an_anthropic_continuation_does_not_repeat_the_prefix() -> None:
    # llama-server's Anthropic endpoint starts the continuation's text with its prefill.
    continuation = START + TEXT_BLOCK + text_delta("Once upon a") + text_delta(" time") + b"".join(ENDING)
    rewritten = messages.rewriter(Progress("Once upon", 2, opened=True, open_block=0))(continuation)
    texts = [data["delta"]["text"] for event in events_of(rewritten) if (data := json_of(event)) and event.name == "content_block_delta"]
    assert texts == [" a", " time"]


def test_an_anthropic_continuation_without_text_still_stops_the_clients_block() -> None:
    # llama-server stops only the blocks its own answer has: here none.
    continuation = START + ENDING[1] + ENDING[2]
    events = list(events_of(messages.rewriter(Progress("Once upon", 2, opened=True, open_block=0))(continuation)))
    assert [event.name for event in events] == ["content_block_stop", "message_delta", "message_stop"]
    assert json_of(events[0]) == {"type": "content_block_stop", "index": 0}

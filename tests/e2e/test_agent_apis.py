"""The agents' APIs through a mesh: the official `anthropic` SDK against /v1/messages and the
`openai` SDK's Responses API against /v1/responses, both at node B (an API-only client with an API
key), answered by node A, the only node serving the model: B's gateway relays over QUIC and its
`x-mesh-node` header names A. Bad input gets each API's own error shape, never a traceback.

The tool round needs a model that calls tools: A also serves a copy of SmolLM2 whose GGUF carries
a tool-capable chat template (tests/data/functionary-v3.2.jinja, written in by tests/synthetic.py).
llama-server shows the model the tools by that template and, for a required tool choice, constrains
its answer to a call by grammar: the tool_use block is the model's own, relayed through the mesh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import SMOLLM2
from tests.e2e.test_fetch_on_start import smollm2_path
from tests.meshbed import MeshBed
from tests.nodes import NodeProcess
from tests.synthetic import with_chat_template

pytestmark = pytest.mark.e2e
KEY = "agent-key"
TOOLS_MODEL = "SmolLM2-tools"  # SmolLM2 with a tool-capable chat template
HELLO = [{"role": "user", "content": "Name three colours."}]
# Greedy decoding, so that a streamed answer can be compared with a whole one (this SDK has no
# temperature argument; llama-server reads the field).
GREEDY = {"temperature": 0}
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, llama_bin_dir) -> Iterator[tuple[str, NodeProcess]]:
    """(A's node id, B): the models on A only, the SDKs pointed at B."""
    folder = tmp_path_factory.mktemp("agents")
    template = (Path(__file__).parent.parent / "data" / "functionary-v3.2.jinja").read_text()
    tools_model = with_chat_template(smollm2_path(), folder / f"{TOOLS_MODEL}.gguf", template)
    bed = MeshBed(folder)
    try:
        a = bed.start("A", "--model", SMOLLM2, "--model", str(tools_model))
        b = bed.start("B", "--client", "--api-key", KEY, join=a)
        a.wait_ready(SMOLLM2)
        a.wait_ready(TOOLS_MODEL)
        bed.wait_until(lambda: ready_at(b, SMOLLM2) and ready_at(b, TOOLS_MODEL), 60, "B sees A's servers ready")
        yield a.status()["id"], b
    finally:
        bed.close()


def ready_at(node: NodeProcess, model: str) -> bool:
    try:
        listed = httpx.get(f"{node.api}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()["data"]
        return any(m["id"] == model and m["nodes"] and all(n["state"] == "ready" for n in m["nodes"]) for m in listed)
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def claude(b: NodeProcess, key: str = KEY) -> anthropic.Anthropic:
    # The SDK sends the key as x-api-key, as Claude clients do.
    return anthropic.Anthropic(base_url=b.api, api_key=key, max_retries=0, timeout=60)


def gpt(b: NodeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{b.api}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_anthropic_messages_plain_streamed_and_counted_come_from_the_far_node(mesh) -> None:
    a_id, b = mesh
    raw = claude(b).messages.with_raw_response.create(model=SMOLLM2, max_tokens=24, extra_body=GREEDY, messages=HELLO)
    assert raw.headers["x-mesh-node"] == a_id
    whole = raw.parse()
    assert whole.type == "message" and whole.role == "assistant" and whole.stop_reason in ("end_turn", "max_tokens")
    assert whole.content[0].type == "text" and whole.content[0].text
    assert whole.usage.output_tokens > 0

    with claude(b).messages.stream(model=SMOLLM2, max_tokens=24, extra_body=GREEDY, messages=HELLO) as stream:
        assert stream.response.headers["x-mesh-node"] == a_id
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1, "the text came in one event, not streamed"
    assert "".join(pieces) == final.content[0].text == whole.content[0].text

    assert claude(b).messages.count_tokens(model=SMOLLM2, messages=HELLO).input_tokens > 0


def test_anthropic_tool_round(mesh) -> None:
    """A real call: the model emits tool_use (no turn supplied by the test), the client answers it
    with a tool_result, and the model answers that, all through B to A."""
    a_id, b = mesh
    question = {"role": "user", "content": "What is the weather in Paris? Use the tool."}
    raw = claude(b).messages.with_raw_response.create(
        model=TOOLS_MODEL, max_tokens=64, extra_body=GREEDY, messages=[question], tools=[WEATHER], tool_choice={"type": "any"}
    )
    assert raw.headers["x-mesh-node"] == a_id
    first = raw.parse()
    calls = [block for block in first.content if block.type == "tool_use"]
    assert first.stop_reason == "tool_use" and len(calls) == 1, first
    call = calls[0]
    assert call.name == "get_weather" and call.id and isinstance(call.input, dict) and set(call.input) == {"city"}
    print(f"the model called get_weather({call.input})")

    result = {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C."}
    turn = [block.model_dump(exclude_none=True) for block in first.content]
    # The answer to the result. This template's own format wants the model to open an answer with
    # ">>>all" (a 135M model never does, and llama-server then refuses its output), so the client
    # prefills the start of the answer, as Anthropic's API allows; the model goes on from there.
    prefill = {"role": "assistant", "content": "In Paris it is"}
    answer = claude(b).messages.create(
        model=TOOLS_MODEL,
        max_tokens=16,
        extra_body=GREEDY,
        messages=[question, {"role": "assistant", "content": turn}, {"role": "user", "content": [result]}, prefill],
    )
    assert answer.role == "assistant" and [block.type for block in answer.content] == ["text"]
    text = answer.content[0].text
    assert text.strip() and text.strip() != prefill["content"], answer
    print(f"the model answered the result: {text!r}")


def test_anthropic_tool_call_streamed(mesh) -> None:
    """The call streamed: a tool_use block whose input arrives as input_json_delta events, relayed
    event by event, and the message ends with stop_reason tool_use."""
    _, b = mesh
    question = {"role": "user", "content": "What is the weather in Paris? Use the tool."}
    with claude(b).messages.stream(
        model=TOOLS_MODEL, max_tokens=64, extra_body=GREEDY, messages=[question], tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    starts = [e for e in events if e.type == "content_block_start" and e.content_block.type == "tool_use"]
    deltas = [e.delta.partial_json for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert starts and starts[0].content_block.name == "get_weather"
    assert deltas, "the call's input came in no input_json_delta"
    assert final.stop_reason == "tool_use"
    (call,) = [block for block in final.content if block.type == "tool_use"]
    assert call.input == json.loads("".join(deltas))


def test_openai_responses_plain_and_streamed_come_from_the_far_node(mesh) -> None:
    a_id, b = mesh
    raw = gpt(b).responses.with_raw_response.create(model=SMOLLM2, input="Name three colours.", max_output_tokens=24, temperature=0)
    assert raw.headers["x-mesh-node"] == a_id
    whole = raw.parse()
    assert whole.status == "completed" and whole.output_text
    assert whole.usage is not None and whole.usage.output_tokens > 0

    events = list(gpt(b).responses.create(model=SMOLLM2, input="Name three colours.", max_output_tokens=24, temperature=0, stream=True))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 1, "the text came in one event, not streamed"
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(deltas) == events[-1].response.output_text


def anthropic_error(response: httpx.Response, status: int, type_: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == type_
    return body["error"]["message"]


def test_bad_input_gets_each_api_s_own_error_shape(mesh) -> None:
    _, b = mesh
    with pytest.raises(anthropic.NotFoundError) as unknown:
        claude(b).messages.create(model="no-such-model", max_tokens=8, messages=HELLO)
    body = unknown.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert SMOLLM2 in unknown.value.message
    with pytest.raises(anthropic.AuthenticationError):
        claude(b, key="wrong").messages.create(model=SMOLLM2, max_tokens=8, messages=HELLO)

    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    messages = f"{b.api}/v1/messages"
    anthropic_error(httpx.post(messages, content=b"{not json", headers=headers), 400, "invalid_request_error")
    assert "max_tokens" in anthropic_error(httpx.post(messages, json={"model": SMOLLM2, "messages": HELLO}, headers=headers), 400, "invalid_request_error")
    # Refused by A's llama-server, and still in the Anthropic shape when it reaches the client.
    too_long = {"model": SMOLLM2, "max_tokens": 8, "messages": [{"role": "user", "content": "hello " * 40000}]}
    assert "context" in anthropic_error(httpx.post(messages, json=too_long, headers=headers, timeout=60), 400, "invalid_request_error")

    # Another name: an unknown model asked for is counted as demand, and once the mesh hears of that
    # demand the same name is a known model nobody serves (503), not an unknown one.
    with pytest.raises(openai.NotFoundError) as missing:
        gpt(b).responses.create(model="no-such-responses-model", input="Hi")
    assert isinstance(missing.value.body, dict) and missing.value.body["code"] == "model_not_found"
    # llama-server keeps no responses: A refuses previous_response_id in the OpenAI shape.
    with pytest.raises(openai.BadRequestError) as stateful:
        gpt(b).responses.create(model=SMOLLM2, input="Hi", previous_response_id="resp_1")
    assert isinstance(stateful.value.body, dict) and "previous_response_id" in stateful.value.body["message"]
    bad = httpx.post(f"{b.api}/v1/responses", content=b"{not json", headers={"Authorization": f"Bearer {KEY}"})
    assert bad.status_code == 400 and set(bad.json()["error"]) == {"message", "type", "code"}

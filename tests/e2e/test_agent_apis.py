"""The agents' APIs through a mesh: the official `anthropic` SDK against /v1/messages and the
`openai` SDK's Responses API against /v1/responses, both at node B (an API-only client with an API
key), answered by node A, the only node serving the model: B's gateway relays over QUIC and its
`x-mesh-node` header names A. Bad input gets each API's own error shape, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.conftest import SMOLLM2
from tests.meshbed import MeshBed
from tests.nodes import NodeProcess

pytestmark = pytest.mark.e2e
KEY = "agent-key"
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
    """(A's node id, B): the model on A only, the SDKs pointed at B."""
    bed = MeshBed(tmp_path_factory.mktemp("agents"))
    try:
        a = bed.start("A", "--model", SMOLLM2)
        b = bed.start("B", "--client", "--api-key", KEY, join=a)
        a.wait_ready(SMOLLM2)
        bed.wait_until(lambda: ready_at(b), 60, "B sees A's server ready")
        yield a.status()["id"], b
    finally:
        bed.close()


def ready_at(node: NodeProcess) -> bool:
    try:
        listed = httpx.get(f"{node.api}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()["data"]
        return any(m["id"] == SMOLLM2 and m["nodes"] and all(n["state"] == "ready" for n in m["nodes"]) for m in listed)
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
    a_id, b = mesh
    question = {"role": "user", "content": "What is the weather in Paris? Use the tool."}
    raw = claude(b).messages.with_raw_response.create(
        model=SMOLLM2, max_tokens=64, extra_body=GREEDY, messages=[question], tools=[WEATHER], tool_choice={"type": "any"}
    )
    assert raw.headers["x-mesh-node"] == a_id
    first = raw.parse()
    calls = [block for block in first.content if block.type == "tool_use"]
    if calls:
        call = calls[0]
        assert call.name == "get_weather" and call.id and isinstance(call.input, dict)
        assert first.stop_reason == "tool_use"
        turn = [block.model_dump(exclude_none=True) for block in first.content]
        call_id = call.id
    else:
        # SmolLM2's chat template has no tools, and llama-server then neither shows them to the
        # model nor forces a call: the round goes on with the call a capable model would make.
        print("SmolLM2 answered in text; the tool_use turn is supplied")
        call_id = "toolu_mesh_1"
        turn = [{"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": "Paris"}}]
    result = {"type": "tool_result", "tool_use_id": call_id, "content": "Sunny, 21 C."}
    answer = claude(b).messages.create(
        model=SMOLLM2,
        max_tokens=32,
        extra_body=GREEDY,
        tools=[WEATHER],
        messages=[question, {"role": "assistant", "content": turn}, {"role": "user", "content": [result]}],
    )
    assert answer.role == "assistant" and answer.content and answer.content[0].type == "text" and answer.content[0].text


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

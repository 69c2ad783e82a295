"""One real node (CLI, four services, real llama-server with SmolLM2) seen as a user sees it."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SMOLLM2
from tests.nodes import is_loopback

pytestmark = pytest.mark.e2e

GREEDY = {"temperature": 0, "seed": 7, "max_tokens": 24}
HELLO = [{"role": "user", "content": "Name three colours."}]
MDNS_PORT = 5353


@pytest.fixture
def node(start_node):
    node = start_node("--model", SMOLLM2)
    node.wait_ready(SMOLLM2)
    return node


def sdk(node) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{node.api}/v1", api_key="unused", max_retries=0, timeout=60)


def test_openai_sdk_chat_stream_completion_and_models(node) -> None:
    client = sdk(node)
    chat = client.chat.completions.create(model=SMOLLM2, messages=HELLO, **GREEDY)
    answer = chat.choices[0].message.content
    assert answer and chat.model == SMOLLM2 and chat.usage.completion_tokens > 0

    chunks = list(client.chat.completions.create(model=SMOLLM2, messages=HELLO, stream=True, **GREEDY))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1
    # In order: greedy decoding streamed piece by piece spells the same answer.
    assert "".join(pieces) == answer

    completion = client.completions.create(model=SMOLLM2, prompt="The capital of France is", **GREEDY)
    assert completion.choices[0].text

    assert [m.id for m in client.models.list().data] == [SMOLLM2]


def test_metrics_count_requests_and_tokens(node) -> None:
    client = sdk(node)
    completion_tokens = 0
    for _ in range(3):
        completion_tokens += client.chat.completions.create(model=SMOLLM2, messages=HELLO, **GREEDY).usage.completion_tokens
    streamed = list(client.chat.completions.create(model=SMOLLM2, messages=HELLO, stream=True, **GREEDY))
    completion_tokens += sum(1 for c in streamed if c.choices and c.choices[0].delta.content)

    def read() -> dict:
        found = {}
        for family in text_string_to_metric_families(httpx.get(f"{node.api}/metrics").text):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found

    # A streamed answer's tokens are counted when the gateway lets go of it, a moment after the
    # client read its last event (CI once read the metrics in between: 72 of 96 tokens).
    deadline = time.monotonic() + 10
    samples = read()
    while samples.get(("mesh_gateway_completion_tokens_total", (("model", SMOLLM2),))) != completion_tokens and time.monotonic() < deadline:
        time.sleep(0.1)
        samples = read()
    requests = sum(v for (name, labels), v in samples.items() if name == "mesh_gateway_requests_total" and ("model", SMOLLM2) in labels)
    assert requests == 4
    assert samples[("mesh_gateway_completion_tokens_total", (("model", SMOLLM2),))] == completion_tokens
    assert samples[("mesh_gateway_prompt_tokens_total", (("model", SMOLLM2),))] > 0
    first_tokens = sum(v for (name, labels), v in samples.items() if name == "mesh_gateway_time_to_first_token_seconds_count" and ("model", SMOLLM2) in labels)
    assert first_tokens == 4
    assert sum(v for (name, _), v in samples.items() if name == "mesh_gateway_inter_token_seconds_count") > 0


def test_events_report_ready_within_a_second_of_llama_server(node) -> None:
    # The SSE stream is open before the model (re)starts: kill llama-server and watch it come back.
    seen: dict[str, float] = {}

    def watch_health() -> None:
        # The reference clock: the moment the new llama-server itself first answers /health with 200.
        while "health" not in seen and "stop" not in seen:
            port = seen.get("port")
            if port:
                try:
                    if httpx.get(f"http://127.0.0.1:{int(port)}/health", timeout=1).status_code == 200:
                        seen["health"] = time.monotonic()
                except httpx.HTTPError:
                    pass
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_health, daemon=True)
    with httpx.stream("GET", f"{node.console_url}/api/events", timeout=httpx.Timeout(5, read=60)) as events:
        lines = events.iter_lines()
        assert next(line for line in lines if line.startswith("event: ")) == "event: status"
        (server,) = node.llama_servers()
        server.kill()
        watcher.start()
        for line in lines:
            if not line.startswith("data: "):
                continue
            (model,) = json.loads(line[len("data: ") :])["models"]
            if model["state"] == "starting":
                seen.setdefault("port", model["port"])
            if model["state"] == "ready" and "port" in seen:
                seen["event"] = time.monotonic()
                break
    seen["stop"] = 1
    watcher.join(5)
    assert "event" in seen and "health" in seen, node.log_tail()
    assert seen["event"] - seen["health"] < 1.0


def test_sigkill_of_llama_server_is_survived(node) -> None:
    client = sdk(node)
    (server,) = node.llama_servers()
    server.kill()
    # Meanwhile: 503 with Retry-After (never a hang or a traceback).
    response = httpx.post(f"{node.api}/v1/chat/completions", json={"model": SMOLLM2, "messages": HELLO}, timeout=30)
    assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["code"] == "model_not_ready"

    state = node.wait_ready(SMOLLM2, timeout=60)
    assert state["restarts"] == 1
    (restarted,) = node.llama_servers()
    assert restarted.pid != server.pid
    assert client.chat.completions.create(model=SMOLLM2, messages=HELLO, **GREEDY).choices[0].message.content


def test_only_the_quic_port_and_the_lan_announcement_are_reachable_from_other_machines(node) -> None:
    listeners, udp = node.sockets()
    # gateway API and console, four gRPC servers, llama-server: all on loopback.
    assert len(listeners) >= 7 and all(is_loopback(ip) for ip, _ in listeners), listeners
    quic_port = int(node.status()["address"].rpartition(":")[2])
    # Bound to all interfaces, the node announces itself over mDNS (UDP 5353; --no-announce: none).
    ports = [port for _, port in udp]
    assert ports.count(quic_port) == 1 and set(ports) <= {quic_port, MDNS_PORT}, udp


def test_ctrl_c_leaves_no_process_behind(node) -> None:
    ours = [node.process.pid, *(p.pid for p in node.descendants())]
    assert len(node.llama_servers()) == 1 and len(ours) >= 6
    assert node.interrupt() == 0
    alive = [pid for pid in ours if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{node.api}/health", timeout=2)

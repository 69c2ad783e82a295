"""Any node answers for the whole mesh: requests routed by model over QUIC HTTP tunnels."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.runner.models import resolve
from tests.conftest import SMOLLM2

pytestmark = pytest.mark.e2e
OTHER = "Other-Model"
HELLO = [{"role": "user", "content": "Name three colours."}]


def other_model(tmp_path: Path) -> str:
    """A second model: the same GGUF registered under another name."""
    link = tmp_path / "models" / f"{OTHER}.gguf"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(resolve(SMOLLM2, tmp_path).path)
    return str(link)


def sdk(node) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{node.api}/v1", api_key="unused", max_retries=0, timeout=60)


def start_abc(bed, tmp_path: Path):
    a = bed.start("A", "--model", SMOLLM2)
    b = bed.start("B", "--model", other_model(tmp_path), join=a)
    c = bed.start("C", "--client", join=a)
    a.wait_ready(SMOLLM2)
    b.wait_ready(OTHER)
    bed.wait_until(lambda: all(_ready_everywhere(n, m) for n in (a, b, c) for m in (SMOLLM2, OTHER)), 30, "both models ready everywhere")
    return a, b, c


def _model_ids(node) -> list[str]:
    try:
        return [m["id"] for m in httpx.get(f"{node.api}/v1/models", timeout=5).json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError):
        return []


def llama_port(node, model: str) -> int:
    return node.model_state(model)["port"]


def test_client_node_reaches_both_models_streams_incrementally_and_frees_slots(mesh_bed, tmp_path) -> None:
    a, b, c = start_abc(mesh_bed, tmp_path)
    for node in (a, b, c):
        assert sorted(_model_ids(node)) == [OTHER, SMOLLM2]
    client = sdk(c)
    for model in (SMOLLM2, OTHER):
        whole = client.chat.completions.create(model=model, messages=HELLO, temperature=0, seed=1, max_tokens=16)
        assert whole.model == model and whole.choices[0].message.content
        pieces = [
            ch.choices[0].delta.content
            for ch in client.chat.completions.create(model=model, messages=HELLO, temperature=0, seed=1, max_tokens=16, stream=True)
            if ch.choices and ch.choices[0].delta.content
        ]
        assert "".join(pieces) == whole.choices[0].message.content
    assert client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=8).choices[0].text
    a_id = a.status()["id"]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(httpx.get(f"{c.api}/metrics").text)
        for s in family.samples
    }
    to_a = sum(v for (name, labels), v in samples.items() if name == "mesh_gateway_requests_total" and ("target", a_id) in labels)
    assert to_a == 3  # chat, streamed chat, completion
    assert samples[("mesh_peer_bytes_total", (("direction", "received"), ("stream", "http")))] > 1000
    assert sum(v for (name, labels), v in samples.items() if name == "mesh_gateway_time_to_first_token_seconds_count" and ("target", a_id) in labels) == 3

    # Incremental: chunks through C -> A arrive spread over the generation, not all at once.
    started = time.monotonic()
    stamps = []
    body = {"model": SMOLLM2, "messages": HELLO, "stream": True, "max_tokens": 64, "ignore_eos": True}
    with httpx.stream("POST", f"{c.api}/v1/chat/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                stamps.append(time.monotonic())
    assert len(stamps) > 30
    assert stamps[-1] - stamps[0] > 0.5 * (stamps[-1] - started), "chunks arrived in one burst"

    # A client that goes away mid-stream frees A's llama-server slot within 2 s.
    body = {"model": SMOLLM2, "messages": HELLO, "stream": True, "max_tokens": 4000, "ignore_eos": True}
    with httpx.stream("POST", f"{c.api}/v1/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(10):
            next(lines)
        assert _busy_slots(a) == 1
    closed = time.monotonic()
    mesh_bed.wait_until(lambda: _busy_slots(a) == 0, 2.0, "slot freed")
    print(f"slot freed {time.monotonic() - closed:.2f}s after the client left")


def _busy_slots(node) -> int:
    slots = httpx.get(f"http://127.0.0.1:{llama_port(node, SMOLLM2)}/slots", timeout=5).json()
    return sum(1 for slot in slots if slot.get("is_processing"))


def test_killing_llama_server_during_a_burst_never_hangs(mesh_bed, tmp_path) -> None:
    a, _, c = start_abc(mesh_bed, tmp_path)
    results: list[object] = []

    def ask(i: int) -> None:
        try:
            response = httpx.post(
                f"{c.api}/v1/chat/completions",
                timeout=60,
                json={"model": SMOLLM2, "messages": [{"role": "user", "content": f"Count to {i}"}], "max_tokens": 48},
            )
            results.append(response.status_code)
        except httpx.HTTPError as failure:
            results.append(failure)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(ask, i) for i in range(16)]
        time.sleep(0.3)
        (server,) = a.llama_servers()
        server.kill()
        for future in futures:
            future.result(timeout=90)
    assert len(results) == 16 and set(results) <= {200, 503}, results
    assert 503 in results
    a.wait_ready(SMOLLM2)
    mesh_bed.wait_until(lambda: _ready_everywhere(c, SMOLLM2), 10, "C sees A's server ready again")
    assert sdk(c).chat.completions.create(model=SMOLLM2, messages=HELLO, max_tokens=8).choices[0].message.content


def test_same_user_sticks_to_one_node_and_load_spreads(mesh_bed, tmp_path) -> None:
    a = mesh_bed.start("A", "--model", SMOLLM2)
    d = mesh_bed.start("D", "--model", SMOLLM2, join=a)
    c = mesh_bed.start("C", "--client", join=a)
    a.wait_ready(SMOLLM2)
    d.wait_ready(SMOLLM2)
    mesh_bed.wait_until(lambda: len(_nodes_serving(c)) == 2, 30, "both servers visible from C")

    def target(user: str | None, prompt: str) -> str:
        body = {"model": SMOLLM2, "messages": [{"role": "user", "content": prompt}], "max_tokens": 24}
        if user:
            body["user"] = user
        response = httpx.post(f"{c.api}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200
        return response.headers["x-mesh-node"]

    for user in ("alice", "bob", "carol"):
        assert len({target(user, f"question {i}") for i in range(4)}) == 1
    users = {target(f"user{i}", "hi") for i in range(12)}
    assert len(users) == 2  # different sessions use both nodes

    with ThreadPoolExecutor(6) as pool:
        spread = list(pool.map(lambda i: target(None, f"Tell me about number {i}"), range(12)))
    assert set(spread) == set(_nodes_serving(c)), spread


def _ready_everywhere(node, model: str) -> bool:
    try:
        listed = {m["id"]: m for m in httpx.get(f"{node.api}/v1/models", timeout=5).json()["data"]}
        return all(n["state"] == "ready" for n in listed[model]["nodes"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def _nodes_serving(node) -> list[str]:
    try:
        (model,) = httpx.get(f"{node.api}/v1/models", timeout=5).json()["data"]
        return [n["node_id"] for n in model["nodes"] if n["state"] == "ready"]
    except (httpx.HTTPError, ValueError, KeyError):
        return []


def test_drop_stops_serving_a_model(mesh_bed, tmp_path) -> None:
    a = mesh_bed.start("A", "--model", SMOLLM2, "--model", other_model(tmp_path))
    a.wait_ready(SMOLLM2)
    a.wait_ready(OTHER)
    import subprocess

    from tests.nodes import MESH_LLM

    dropped = subprocess.run([str(MESH_LLM), "drop", OTHER, "--home", str(a.home)], capture_output=True, text=True, timeout=60)
    assert dropped.returncode == 0, dropped.stderr
    mesh_bed.wait_until(lambda: _model_ids(a) == [SMOLLM2], 10, "dropped")
    assert len(a.llama_servers()) == 1
    response = httpx.post(f"{a.api}/v1/chat/completions", json={"model": OTHER, "messages": HELLO}, timeout=30)
    # Still on A's disk: unserved, not unknown; the request counts as demand a standby could answer.
    assert response.status_code == 503 and "counted as demand" in response.json()["error"]["message"]
    assert SMOLLM2 in response.json()["error"]["message"] and response.headers["retry-after"]
    mesh_bed.wait_until(
        lambda: any(d["model_id"] == OTHER and d["requests"] == 1 and not d["pinned"] for d in a.status()["demand"]), 10, "the dropped model in the demand map"
    )

"""A streamed answer whose serving node dies mid-stream, with no server left to take it over,
never looks finished to the client.

Tried as a user would: client node C, node A serving SmolLM2, a 200-token stream through C, and A
killed with SIGKILL after 30 chunks (the whole node, or only its llama-server). C waits for no
other server (MESH_GATEWAY_TAKEOVER_WAIT=0: a restarted llama-server would take the answer over,
test_takeover.py has those), so the client's stream must end with an OpenAI error event and then
`data: [DONE]`, and C must log and count the request as failed (before, the stream just ended: no
error, no finish_reason, no [DONE], and C logged status=200).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SMOLLM2

pytestmark = pytest.mark.e2e


def cut_errors(node, target: str) -> float:
    families = text_string_to_metric_families(httpx.get(f"{node.api}/metrics", timeout=5).text)
    return sum(
        s.value
        for family in families
        for s in family.samples
        if s.name == "mesh_gateway_target_errors_total" and s.labels["target"] == target and s.labels["reason"] == "cut"
    )


def _ready_from(node) -> bool:
    try:
        listed = {m["id"]: m for m in httpx.get(f"{node.api}/v1/models", timeout=5).json()["data"]}
        return any(n["state"] == "ready" for n in listed[SMOLLM2]["nodes"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False  # not up yet


@pytest.mark.parametrize("victim", ["node", "llama-server"])
def test_a_serving_node_killed_mid_stream_ends_the_stream_with_an_error_and_done(mesh_bed, victim: str) -> None:
    a = mesh_bed.start("A", "--model", SMOLLM2)
    c = mesh_bed.start("C", "--client", join=a, env={"MESH_GATEWAY_TAKEOVER_WAIT": "0"})
    a.wait_ready(SMOLLM2)
    mesh_bed.wait_until(lambda: _ready_from(c), 60, "A's model ready as seen from C")
    a_id = a.status()["id"]
    body = {"model": SMOLLM2, "messages": [{"role": "user", "content": "Tell me a long story."}], "stream": True, "max_tokens": 200, "ignore_eos": True}
    events: list[str] = []
    with httpx.stream("POST", f"{c.api}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line.removeprefix("data: "))
            if len(events) == 30:
                killed = time.monotonic()
                if victim == "node":
                    a.kill()
                else:
                    (server,) = a.llama_servers()
                    server.kill()
    noticed = time.monotonic() - killed
    assert events[-1:] == ["[DONE]"], f"the stream ended without [DONE] after {len(events)} events: {events[-1:]}"
    *chunks, last = [json.loads(event) for event in events[:-1]]
    assert 30 <= len(chunks) < 200, "the kill landed after the answer was complete: nothing was tested"
    assert all("choices" in chunk for chunk in chunks)
    assert not any(choice.get("finish_reason") for chunk in chunks for choice in chunk["choices"])
    error = last["error"]
    assert set(error) == {"message", "type", "code"} and error["type"] == "server_error", error
    print(f"{len(chunks)} chunks, then {noticed:.1f}s after the kill: {error['message']}")

    assert cut_errors(c, a_id) == 1
    lines = [line for line in c.log_path.read_text().splitlines() if "service=gateway" in line and "request " in line]
    (failed,) = [line for line in lines if " request failed " in line]
    assert f"model={SMOLLM2}" in failed and f"node={a_id}" in failed and "status=200" not in failed
    assert not [line for line in lines if " request done " in line], lines

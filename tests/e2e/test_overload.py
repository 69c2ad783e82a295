"""Excess load is refused with 503 and Retry-After, never left hanging (issue 22, load).

One node whose llama-server serves one request at a time (--parallel 1): its gateway sends it at
most two (admission.py), lets two more wait for room for 2 s, and answers the rest at once with
503 and Retry-After. Twelve concurrent streamed chats: every one ends within the client's timeout,
either whole or refused in the OpenAI error shape."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tests.conftest import SMOLLM2
from tests.nodes import NodeProcess

pytestmark = pytest.mark.e2e


def ask(api: str, n: int) -> tuple[int, str, bool]:
    """(status, Retry-After, whether a 200 stream ended with [DONE])."""
    body = {"model": SMOLLM2, "messages": [{"role": "user", "content": f"Count to {n}."}], "max_tokens": 24, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{api}/v1/chat/completions", json=body, timeout=60) as response:
        if response.status_code != 200:
            error = response.read()
            assert response.json()["error"]["message"], error
            return response.status_code, response.headers.get("retry-after", ""), False
        done = any(line == "data: [DONE]" for line in response.iter_lines())
        return 200, "", done


def test_excess_load_gets_503_with_retry_after_and_no_request_hangs(tmp_path, llama_bin_dir) -> None:
    node = NodeProcess(tmp_path / "node", "--model", SMOLLM2, "--parallel", "1").start({"MESH_GATEWAY_QUEUE": "2", "MESH_GATEWAY_QUEUE_WAIT": "2"})
    try:
        node.wait_ready(SMOLLM2)
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda n: ask(node.api, n), range(12)))  # a timeout (no answer) raises here
        served = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] == 503]
        assert len(served) + len(refused) == 12, results
        assert served and all(done for _, _, done in served), results
        # Two in flight and two waiting at most: eight or more refused, each saying when to come back.
        assert len(refused) >= 6 and all(retry_after.isdigit() and int(retry_after) >= 1 for _, retry_after, _ in refused), results
    finally:
        node.stop()

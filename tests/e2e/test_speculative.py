"""Speculative decoding as a user sees it: one real node, SmolLM2, answers through the gateway.

--draft gives llama-server a draft model whose guesses the model checks: greedy output is the same
as without it, and the response's timings say how many guesses were taken. SmolLM2 as its own draft
guesses every token right. --spec ngram-* guesses from the prompt instead (no draft model): a code
edit repeats most of the code it was given.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import SMOLLM2
from tests.e2e.test_split import wait_split_ready
from tests.nodes import NodeProcess

pytestmark = pytest.mark.e2e

GREEDY = {"temperature": 0, "seed": 7, "max_tokens": 64}
STORY = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
FUNCTION = """def greet(name):
    message = "Hello, " + name + "!"
    print(message)
    return message
"""
# SmolLM2-135M repeats this one with the change (a longer function it rewrites in its own way).
CODE_EDIT = [{"role": "user", "content": f"Repeat this Python function exactly, but change Hello to Goodbye:\n\n```python\n{FUNCTION}```"}]


def chat(node, messages: list[dict[str, str]], max_tokens: int = 64) -> dict:
    body = {"model": SMOLLM2, "messages": messages, **GREEDY, "max_tokens": max_tokens}
    response = httpx.post(f"{node.api}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def llama_argv(node) -> list[str]:
    (server,) = node.llama_servers()
    return server.cmdline()


@pytest.fixture(scope="module")
def plain(tmp_path_factory, llama_bin_dir) -> tuple[dict, list[str]]:
    """The story's greedy answer of a node with --no-draft, and its llama-server's argv."""
    node = NodeProcess(tmp_path_factory.mktemp("plain"), "--model", SMOLLM2, "--no-draft").start()
    try:
        node.wait_ready(SMOLLM2)
        return chat(node, STORY), llama_argv(node)
    finally:
        node.stop()


def acceptance_of(answer: dict, what: str) -> float:
    timings = answer["timings"]
    acceptance = timings["draft_n_accepted"] / timings["draft_n"]
    print(f"draft acceptance, {what}: {timings['draft_n_accepted']}/{timings['draft_n']} = {acceptance:.1%}")
    return acceptance


def test_a_draft_keeps_the_greedy_answer_and_reports_its_acceptance(start_node, plain) -> None:
    without, plain_argv = plain
    drafted = start_node("--model", SMOLLM2, "--draft", SMOLLM2)
    drafted.wait_ready(SMOLLM2)
    with_draft = chat(drafted, STORY)

    assert with_draft["choices"][0]["message"]["content"] == without["choices"][0]["message"]["content"]
    assert acceptance_of(with_draft, "SmolLM2 drafting for itself") > 0.9
    # Without a draft llama-server drafts nothing (it leaves the fields out) and has no draft model.
    assert "draft_n" not in without["timings"]
    assert "--spec-draft-model" not in plain_argv


def test_a_split_host_runs_the_draft_on_its_own_device(mesh_bed, plain) -> None:
    """Split over two nodes (neither holds the model alone), the host's llama-server drafts on the
    host (the CPU here), not on the worker's RPC device; the answer stays the plain one."""
    first = mesh_bed.start("A", "--model", SMOLLM2, "--max-vram", "0.25", "--draft", SMOLLM2)
    nodes = [first, mesh_bed.start("B", "--model", SMOLLM2, "--max-vram", "0.25", "--draft", SMOLLM2, join=first)]
    host = wait_split_ready(mesh_bed, nodes, 2)
    argv = llama_argv(host)
    assert "--rpc" in argv and argv[argv.index("--spec-draft-device") + 1] == "none"
    answer = chat(host, STORY)
    assert answer["choices"][0]["message"]["content"] == plain[0]["choices"][0]["message"]["content"]
    assert acceptance_of(answer, "SmolLM2 drafting for itself on a split's host") > 0.9


def test_ngram_speculation_on_a_code_edit_reports_acceptance(start_node) -> None:
    node = start_node("--model", SMOLLM2, "--spec", "ngram-simple")
    node.wait_ready(SMOLLM2)
    answer = chat(node, CODE_EDIT, max_tokens=96)
    timings = answer["timings"]
    print(f"n-gram acceptance on a code edit: {timings.get('draft_n_accepted')}/{timings.get('draft_n')}")
    text = answer["choices"][0]["message"]["content"]
    print(text)
    assert 'message = "Goodbye, " + name + "!"' in text  # the edit is made: the prompt's code comes back changed
    assert timings["draft_n"] > 0 and "draft_n_accepted" in timings
    argv = llama_argv(node)
    assert argv[argv.index("--spec-type") + 1] == "ngram-simple" and "--spec-draft-model" not in argv

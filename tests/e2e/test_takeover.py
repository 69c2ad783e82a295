"""A streamed answer survives the server it started on (issue 22, acceptance 1).

One mesh: A and B serve SmolLM2 alone from a copy of its GGUF that is another file; S
serves it split with worker W (S and W offer too little memory for it alone, and hold the
catalog's file: a host plans with holders of its own file only, so neither A nor B, which offer
more memory, takes S's place as the split's host); C is a client node. Twenty streamed chat
requests at temperature 0 go through C, four at a time; the uninterrupted answers come first,
through the same mesh. Then the same twenty again: A is killed with SIGKILL once a stream on A
has had a few chunks, and then W (the split's worker) once a stream on S has. Every stream must
complete as the one uninterrupted answer: the same text, one role delta, one id, no error event,
`[DONE]`, and usage counting the whole answer; and C must have taken over an answer with text
from each of A and S (else a kill cut nothing).

Each server serves one request at a time (--parallel 1): llama-server's slots share one KV pool
(--kv-unified), and there a sequence's greedy answer depends on which others run beside it (a
near tie goes either way), so answers would differ between two runs without any failure.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.runner.models import resolve
from tests.conftest import SMOLLM2
from tests.nodes import NodeProcess

pytestmark = pytest.mark.e2e
THINGS = ["dragon", "lighthouse", "robot", "garden", "pirate", "violin", "desert", "train", "owl", "castle"]
PROMPTS = [f"Write a story about a {thing}." for thing in THINGS] + [f"Describe a {thing} in detail." for thing in THINGS]
MAX_TOKENS = 12
CHUNKS_BEFORE_KILL = 3  # content chunks a stream on the victim has had when it dies
# Requests at once: more than one server's worth, within what the servers take without queueing
# long at the gateway (each serves one at a time, and a gateway sends each at most two).
CONCURRENCY = 4


@dataclass
class Streamed:
    """One stream as the client read it."""

    node: str = ""  # the server it started on (x-mesh-node)
    chunks: int = 0  # content chunks so far
    text: str = ""
    ids: set[str] = field(default_factory=set)
    roles: int = 0
    finishes: list[str] = field(default_factory=list)
    usage: dict | None = None
    errors: list[dict] = field(default_factory=list)
    done: bool = False


def ask(c, prompt: str, streamed: Streamed) -> Streamed:
    body = {
        "model": SMOLLM2,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,  # every answer runs MAX_TOKENS long: none ends before the kill
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{c.api}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200, response.read()
        streamed.node = response.headers["x-mesh-node"]
        for line in response.iter_lines():
            if line == "data: [DONE]":
                streamed.done = True
            elif line.startswith("data: "):
                read(json.loads(line.removeprefix("data: ")), streamed)
    return streamed


def read(chunk: dict, streamed: Streamed) -> None:
    if "error" in chunk:
        streamed.errors.append(chunk["error"])
        return
    streamed.ids.add(chunk["id"])
    streamed.usage = chunk.get("usage") or streamed.usage
    for choice in chunk["choices"]:
        delta = choice["delta"]
        streamed.roles += "role" in delta
        if delta.get("content"):
            streamed.text += delta["content"]
            streamed.chunks += 1
        if choice.get("finish_reason"):
            streamed.finishes.append(choice["finish_reason"])


def ask_all(c, kill: Callable[[list[Streamed]], None] | None = None) -> list[Streamed]:
    """The twenty prompts, CONCURRENCY at a time; `kill(streams)` runs alongside until it returns."""
    streams = [Streamed() for _ in PROMPTS]
    with ThreadPoolExecutor(CONCURRENCY) as pool, ThreadPoolExecutor(1) as killing:
        killer = killing.submit(kill, streams) if kill else None
        results = list(pool.map(ask, [c] * len(PROMPTS), PROMPTS, streams, timeout=180))
        if killer:
            killer.result(timeout=60)
    return results


def killer(c, *victims: tuple[NodeProcess, str]) -> Callable[[list[Streamed]], None]:
    """Kill each (node, server) in turn: the node once a stream that started on the server has had
    a few chunks, and not half its answer; the next once C no longer routes to the last one's
    server (a request that meets two dying servers before its first byte gets 503: one retry)."""

    def kill(streams: list[Streamed]) -> None:
        deadline = time.monotonic() + 120
        for node, serving in victims:
            while not any(s.node == serving and CHUNKS_BEFORE_KILL <= s.chunks < MAX_TOKENS // 2 for s in streams):
                assert time.monotonic() < deadline, f"no stream on {serving} got going"
                time.sleep(0.005)
            node.kill()
            while serving in servers_seen(c):
                assert time.monotonic() < deadline, f"C still routes to {serving}"
                time.sleep(0.05)

    return kill


def resumed_with_text(c) -> list[str]:
    """C's takeover log lines of answers that had text when their server died."""
    lines = [line for line in c.log_path.read_text().splitlines() if "service=gateway" in line and " takeover " in line]
    return [line for line in lines if int(line.split(" tokens=")[1].split()[0]) >= CHUNKS_BEFORE_KILL]


def takeovers(node) -> float:
    families = text_string_to_metric_families(httpx.get(f"{node.api}/metrics", timeout=5).text)
    return sum(s.value for f in families for s in f.samples if s.name == "mesh_gateway_takeovers_total" and s.labels["outcome"] == "resumed")


def servers_seen(node) -> list[str]:
    try:
        (model,) = httpx.get(f"{node.api}/v1/models", timeout=5).json()["data"]
        return sorted(n["node_id"] for n in model["nodes"] if n["state"] == "ready")
    except (httpx.HTTPError, ValueError, KeyError):
        return []


def copy_of_smollm2(folder: Path) -> str:
    """SmolLM2's GGUF with bytes after its last tensor, under the same model name: another file (its
    fingerprint counts the size) of the same model (readers find each tensor by its offset). A
    split's host plans with holders of its own file only."""
    out = folder / "copy" / f"{SMOLLM2}.gguf"
    out.parent.mkdir(parents=True)
    shutil.copyfile(resolve(SMOLLM2, folder).path, out)
    with out.open("ab") as file:
        file.write(bytes(64))
    return str(out)


def check(answers: list[Streamed], references: list[Streamed]) -> None:
    for prompt, answer, reference in zip(PROMPTS, answers, references, strict=True):
        assert not answer.errors, (prompt, answer.errors)
        assert answer.done and answer.roles == 1 and len(answer.ids) == 1, (prompt, answer)
        assert answer.finishes == reference.finishes == ["length"], (prompt, answer.finishes)
        assert answer.text == reference.text, (prompt, answer.node, answer.text, reference.text)
        assert answer.usage is not None and reference.usage is not None
        assert (answer.usage["prompt_tokens"], answer.usage["completion_tokens"]) == (reference.usage["prompt_tokens"], MAX_TOKENS), (prompt, answer.usage)


def test_streams_survive_their_server_and_a_splits_worker(mesh_bed, tmp_path: Path) -> None:
    s = mesh_bed.start("S", "--model", SMOLLM2, "--max-vram", "0.25", "--parallel", "1")
    w = mesh_bed.start("W", "--max-vram", "0.25", join=s)
    copy = copy_of_smollm2(tmp_path)
    a = mesh_bed.start("A", "--model", copy, "--parallel", "1", join=s)
    b = mesh_bed.start("B", "--model", copy, "--parallel", "1", join=s)
    c = mesh_bed.start("C", "--client", join=s)
    started = time.monotonic()
    mesh_bed.wait_until(lambda: len(servers_seen(c)) == 3, 180, "A, S (split with W) and B ready as seen from C")
    ids = {node.name: node.status()["id"] for node in (a, s, w, b)}
    assert servers_seen(c) == sorted([ids["A"], ids["S"], ids["B"]])
    assert [m["kind"] for m in w.status()["models"]] == ["rpc-server"]
    print(f"mesh ready {time.monotonic() - started:.1f}s")

    started = time.monotonic()
    references = ask_all(c)
    assert all(r.text and not r.errors for r in references)
    print(f"references {time.monotonic() - started:.1f}s")

    # A dies, then S's worker W: their streams go on on the servers left.
    started = time.monotonic()
    answers = ask_all(c, killer(c, (a, ids["A"]), (w, ids["S"])))
    check(answers, references)
    resumed = resumed_with_text(c)
    for name in "AS":
        assert any(f"failed={ids[name]}" in line for line in resumed), f"no answer with text was taken over from {name}"
    print(f"A and W killed: {takeovers(c):.0f} takeovers, {len(resumed)} with text, {time.monotonic() - started:.1f}s")

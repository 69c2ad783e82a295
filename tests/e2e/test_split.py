"""A dense model that fits no single node, split by layers over llama.cpp RPC through QUIC tunnels."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from services.common import cpus
from tests.conftest import SMOLLM2

pytestmark = pytest.mark.e2e
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "The three primary colours are", "1, 2, 3, 4,"]


def greedy(node) -> list[str]:
    texts = []
    for prompt in PROMPTS:
        response = httpx.post(
            f"{node.api}/v1/completions",
            timeout=120,
            json={"model": SMOLLM2, "prompt": prompt, "max_tokens": 16, "temperature": 0, "seed": 1, "cache_prompt": False},
        )
        assert response.status_code == 200, response.text
        texts.append(response.json()["choices"][0]["text"])
    return texts


def host_assignment(node) -> dict:
    (assignment,) = node.status()["assignments"]
    return assignment


def split_over(bed, count: int, max_vram: str, env: dict[str, str] | None = None, join_args: tuple[str, ...] = ()) -> list:
    nodes = [bed.start("A", "--model", SMOLLM2, "--max-vram", max_vram, env=env)]
    for name in "BCD"[: count - 1]:
        nodes.append(bed.start(name, "--model", SMOLLM2, "--max-vram", max_vram, *join_args, join=nodes[0], env=env))
    return nodes


def gateway_policy(node) -> int:
    (gateway,) = [p for p in node.descendants() if "services.gateway" in " ".join(p.cmdline())]
    return os.sched_getscheduler(gateway.pid)


def wait_split_ready(bed, nodes, count: int):
    """The host (whichever node it is) once its llama-server is ready over `count` nodes."""

    def host():
        for node in nodes:
            try:
                assignment = host_assignment(node)
                state = node.model_state(SMOLLM2)
            except (httpx.HTTPError, ValueError):
                continue
            if assignment["mode"] == "split-host" and len(assignment["workers"]) == count - 1 and state and state["state"] == "ready":
                return node
        return None

    bed.wait_until(lambda: host() is not None, 180, f"split over {count} nodes ready")
    return host()


@pytest.fixture(scope="module")
def solo_answers(tmp_path_factory, llama_bin_dir):
    from tests.nodes import NodeProcess

    node = NodeProcess(tmp_path_factory.mktemp("solo"), "--model", SMOLLM2).start()
    try:
        node.wait_ready(SMOLLM2)
        return greedy(node)
    finally:
        node.stop()


@pytest.mark.parametrize(
    ("count", "max_vram", "services_idle"),
    [
        (2, "0.25", False),
        (3, "0.15", False),
        # As shipped on Linux: the services at idle priority, llama on every core (services/common/cpus.py).
        pytest.param(2, "0.25", True, marks=pytest.mark.skipif(not cpus.can_idle(), reason="no idle scheduling policy here")),
    ],
)
def test_split_gives_the_same_greedy_answers_as_solo(mesh_bed, solo_answers, count: int, max_vram: str, services_idle: bool) -> None:
    # At idle priority the services run only on what the machine leaves over: on a loaded CI machine
    # a join took longer than the test profile's 8 s and the worker gave up (the CI run of d58fd0e).
    nodes = split_over(mesh_bed, count, max_vram, {"MESH_NODE_SERVICES_IDLE": str(services_idle).lower()}, ("--join-timeout", "60") if services_idle else ())
    host = wait_split_ready(mesh_bed, nodes, count)
    assignment = host_assignment(host)
    assert sum(assignment["layers"]) == 30 and min(assignment["layers"]) >= 1 and len(assignment["layers"]) == count
    workers = [n for n in nodes if n is not host]
    for worker in workers:
        mine = host_assignment(worker)
        assert mine["mode"] == "split-worker" and mine["host"] == assignment["host"]
        assert [m["kind"] for m in worker.status()["models"]] == ["rpc-server"]
    assert greedy(host) == solo_answers
    if services_idle:
        assert all(gateway_policy(node) == os.SCHED_IDLE for node in nodes)
    # Any node answers for the split model, the workers included.
    assert greedy(workers[0])[:1] == solo_answers[:1]


def test_losing_a_worker_makes_the_host_replan(mesh_bed) -> None:
    nodes = split_over(mesh_bed, 3, "0.25")  # two nodes are enough; the third joins a split only if needed
    host = wait_split_ready(mesh_bed, nodes, 2)
    (worker_id,) = host_assignment(host)["workers"]
    worker = next(n for n in nodes if n.status()["id"] == worker_id)
    worker.kill()
    killed = time.monotonic()

    def answers() -> bool:
        try:
            return (
                httpx.post(f"{host.api}/v1/completions", timeout=30, json={"model": SMOLLM2, "prompt": "Hello", "max_tokens": 4}).status_code == 200
                and worker_id not in host_assignment(host)["workers"]
            )
        except httpx.HTTPError:
            return False

    mesh_bed.wait_until(answers, 60, "the host serving again without the lost worker")
    print(f"serving again {time.monotonic() - killed:.1f}s after the worker was killed")
    # The split's llama-server may still be on its way out (seen in state T on a loaded CI machine): one is left in the end.
    mesh_bed.wait_until(lambda: len(host.llama_servers()) == 1, 30, "one llama-server left on the host")

"""A split whose worker has no copy of the model: it fetches only its layers from the Hub (here the
local stand-in, tests/hub.py, through the real huggingface_hub) with ranged requests, primes its
rpc-server from that partial file, and the split answers as the model alone does."""

from __future__ import annotations

import httpx
import pytest

from services.runner import priming
from tests.e2e.test_fetch_on_start import FILE, NAME, REPO, catalog, hub, smollm2_path  # noqa: F401 (hub is a fixture)
from tests.e2e.test_split import PROMPTS, host_assignment, solo_answers  # noqa: F401 (solo_answers is a fixture)
from tests.hub import LocalHub

pytestmark = pytest.mark.e2e


def greedy(node) -> list[str]:
    texts = []
    for prompt in PROMPTS:
        body = {"model": NAME, "prompt": prompt, "max_tokens": 16, "temperature": 0, "seed": 1, "cache_prompt": False}
        response = httpx.post(f"{node.api}/v1/completions", timeout=120, json=body)
        assert response.status_code == 200, response.text
        texts.append(response.json()["choices"][0]["text"])
    return texts


def status_of(node) -> dict:
    """The node's /api/status; {} while its console is not up yet."""
    node.check_alive()
    try:
        return node.status()
    except httpx.HTTPError:
        return {}


def share_of(layers: list[int], worker_index: int) -> int:
    """Bytes of the tensors of the worker's blocks in SmolLM2's file."""
    blocks = priming.worker_layers(tuple(layers), sum(layers), worker_index)
    return sum(size for _, _, size in priming.tensors_of(smollm2_path(), blocks))


def test_a_worker_without_the_model_fetches_only_its_layers_and_the_split_answers_as_solo(
    mesh_bed,
    hub: LocalHub,  # noqa: F811
    solo_answers,  # noqa: F811
) -> None:
    served = hub.files[(REPO, FILE)]
    env = {"HF_ENDPOINT": hub.endpoint}
    host_dir = mesh_bed.workdir / "A"
    catalog(host_dir / "models", served.size_bytes)
    host = mesh_bed.start("A", "--model", NAME, "--max-vram", "0.25", env=env)
    # The host downloads the whole file (too big for it alone, it waits for a worker).
    mesh_bed.wait_until(lambda: any(d["state"] == "done" for d in status_of(host).get("downloads", [])), 120, "the host's download")
    assert hub.sent[FILE] == served.size_bytes
    hub.sent.clear()
    worker = mesh_bed.start("B", "--max-vram", "0.25", join=host, env=env)  # no model, no catalog: lends its memory

    def split_ready() -> bool:
        status = status_of(host)
        state = next((m for m in status.get("models", []) if m["model_id"] == NAME), None)
        planned = [a["mode"] for a in status.get("assignments", [])]
        return planned == ["split-host"] and state is not None and state["state"] == "ready"

    mesh_bed.wait_until(split_ready, 240, "the split over the worker without the model")
    layers = host_assignment(host)["layers"]
    share = share_of(layers, 0)
    fetched = hub.sent[FILE]
    print(f"worker fetched {fetched} bytes of {served.size_bytes} ({fetched / served.size_bytes:.1%}); its layers' share {share} ({layers})")
    assert share <= fetched < share + served.size_bytes * 0.05
    assert NAME not in worker.status()["models_on_disk"]  # the partial file is no model it holds
    assert [m["kind"] for m in worker.status()["models"]] == ["rpc-server"]
    assert "layers fetched" in worker.log_path.read_text()
    assert greedy(host) == solo_answers

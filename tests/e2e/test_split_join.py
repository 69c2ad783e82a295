"""A node that joins with a model on disk and no --model lends its memory to a peer's split, and a
host whose worker cannot start its rpc-server serves without it (issue 16)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SMOLLM2
from tests.e2e.test_split import greedy, host_assignment, solo_answers, wait_split_ready  # noqa: F401 (solo_answers is a fixture)

pytestmark = pytest.mark.e2e


def test_a_joined_node_without_model_flags_works_for_the_split(mesh_bed, solo_answers) -> None:  # noqa: F811
    # As a new user would: A asks for a split, B joins with nothing but the token. B holds SmolLM2
    # (its catalog package is installed) and both offer all of this machine's memory, so B's node
    # id decides nothing: the node that was asked for the model hosts.
    a = mesh_bed.start("A", "--model", SMOLLM2, "--split")
    b = mesh_bed.start("B", join=a)
    started = time.monotonic()
    host = wait_split_ready(mesh_bed, [a, b], 2)
    print(f"split ready {time.monotonic() - started:.1f}s after B started")
    assert host is a
    part = host_assignment(b)
    assert (part["mode"], part["host"]) == ("split-worker", a.status()["id"])
    assert [m["kind"] for m in b.status()["models"]] == ["rpc-server"]
    assert greedy(a) == solo_answers
    assert greedy(b)[:1] == solo_answers[:1]  # B's API answers too, through A


def broken_rpc_server(folder: Path, llama_bin_dir: Path) -> Path:
    """A binaries folder (MESH_LLAMA_BIN) whose ggml-rpc-server exits at once, as one that cannot
    start on this machine would; every other binary is the real one."""
    folder.mkdir()
    for binary in llama_bin_dir.iterdir():
        (folder / binary.name).symlink_to(binary)
    (folder / "ggml-rpc-server").unlink()
    script = folder / "ggml-rpc-server"
    script.write_text("#!/bin/sh\necho 'ggml-rpc-server: cannot start here (test)' >&2\nexit 1\n")
    script.chmod(0o755)
    return folder


def test_a_host_whose_worker_cannot_start_its_rpc_server_serves_solo(mesh_bed, llama_bin_dir, tmp_path) -> None:
    # The rule, with a bound of its own (the default, 60 s, leaves room for priming a big model).
    bound = 15.0
    a = mesh_bed.start("A", "--model", SMOLLM2, "--split", env={"MESH_PLACEMENT_WORKER_START_BOUND": str(bound)})
    b = mesh_bed.start("B", join=a, env={"MESH_LLAMA_BIN": str(broken_rpc_server(tmp_path / "bin", llama_bin_dir))})

    def rpc_failing() -> bool:
        b.check_alive()
        try:
            return any(m["kind"] == "rpc-server" and m["restarts"] > 0 for m in b.status()["models"])
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    # The split was planned with B, and B took its part: its rpc-server is what fails.
    mesh_bed.wait_until(rpc_failing, 60, "B's rpc-server failing")
    failing = time.monotonic()
    b_id = b.status()["id"]

    def solo() -> bool:
        a.check_alive()
        try:
            assignment, state = host_assignment(a), a.model_state(SMOLLM2)
        except (httpx.HTTPError, ValueError):
            return False
        return assignment["mode"] == "solo" and bool(state) and state["state"] == "ready"

    mesh_bed.wait_until(solo, bound + 120, f"A serving alone within {bound:.0f}s (and a load) of B's rpc-server failing")
    print(f"A solo and ready {time.monotonic() - failing:.1f}s after B's rpc-server first failed (bound {bound:.0f}s)")
    assert f"worker={b_id}" in a.log_path.read_text(errors="replace")  # left out by the rule, not by B leaving
    assert b_id in [p["id"] for p in a.status()["peers"]]
    response = httpx.post(f"{a.api}/v1/completions", timeout=60, json={"model": SMOLLM2, "prompt": "Hello", "max_tokens": 4})
    assert response.status_code == 200, response.text

"""One place decides where llama.cpp's binaries are: a node finds them under MESH_LLM_CACHE whatever
HOME says, and with none anywhere it says what to run in one line and exits 2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SMOLLM2
from tests.nodes import MESH_LLM_ARGV, NodeProcess, free_port

pytestmark = pytest.mark.e2e


def test_a_node_serves_from_the_cache_mesh_llm_cache_names_with_an_empty_home(tmp_path: Path, llama_bin_dir: Path) -> None:
    cache_root = llama_bin_dir.parents[2]  # <cache>/llama.cpp/<key>/bin
    empty_home = tmp_path / "home-without-cache"
    empty_home.mkdir()
    env = {name: value for name, value in os.environ.items() if name != "MESH_LLAMA_BIN"}
    node = NodeProcess(tmp_path / "node", "--model", SMOLLM2)
    node.start(env=env | {"HOME": str(empty_home), "MESH_LLM_CACHE": str(cache_root)})
    try:
        node.wait_ready(SMOLLM2)
        runner = next(p for p in node.descendants() if "services.runner" in " ".join(p.cmdline()))
        assert runner.environ()["MESH_RUNNER_LLAMA_BIN"] == str(llama_bin_dir)
        assert all(Path(p.exe()).parent == llama_bin_dir for p in node.llama_servers())
        assert not (empty_home / ".cache").exists()
    finally:
        node.stop()


@pytest.mark.parametrize(
    "flags", [["--model", SMOLLM2], ["--standby", "--model", SMOLLM2], ["--join", "mesh1-not-checked-before-binaries"]], ids=["model", "standby", "join"]
)
def test_no_binaries_anywhere_is_one_line_and_exit_2(tmp_path: Path, flags: list[str]) -> None:
    env = {name: value for name, value in os.environ.items() if name != "MESH_LLAMA_BIN"}
    env |= {"HOME": str(tmp_path / "home"), "MESH_LLM_CACHE": str(tmp_path / "empty-cache")}
    if flags[0] == "--join":
        # A real token: the binaries check comes after the token's own.
        from services.common.invite import InviteToken, new_mesh_id, new_secret

        flags = ["--join", InviteToken(new_mesh_id(), new_secret(), ("127.0.0.1:9",), "fp").encode()]
    done = subprocess.run([*MESH_LLM_ARGV, *flags, "--home", str(tmp_path / "node")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "make llama" in done.stderr and str(tmp_path / "empty-cache") in done.stderr


def test_a_client_node_needs_no_binaries(tmp_path: Path) -> None:
    """A client serves nothing and lends nothing: it gets past the binaries check (and fails later, on the dead mesh)."""
    from services.common.invite import InviteToken, new_mesh_id, new_secret

    env = {name: value for name, value in os.environ.items() if name != "MESH_LLAMA_BIN"}
    env |= {"HOME": str(tmp_path / "home"), "MESH_LLM_CACHE": str(tmp_path / "empty-cache")}
    token = InviteToken(new_mesh_id(), new_secret(), ("127.0.0.1:9",), "fp").encode()
    done = subprocess.run(
        [
            *MESH_LLM_ARGV,
            "--client",
            "--join",
            token,
            "--join-timeout",
            "1",
            "--home",
            str(tmp_path / "node"),
            "--port",
            str(free_port()),
            "--console",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("mesh-llm: error:")]
    # The CLI let it start (its runner may log that it could not serve, as a client's never has to).
    assert done.returncode == 2 and len(errors) == 1 and "could not join the mesh" in errors[0]

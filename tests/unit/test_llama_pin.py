"""Where the pinned llama.cpp build lands (services/common/llama_pin.py): build.py and the node
name the same folder, and every input of a build changes its name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common import llama_pin
from services.runner import binaries

PIN = {"version": "1.2.3", "cmake_flags": ["-DGGML_RPC=ON"], "targets": ["llama-server", "ggml-rpc-server"]}


def test_the_build_script_and_the_node_name_the_same_folder(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(llama_pin.LLAMA_CPP / "build.py"), "--print-bin-dir"],
        env=os.environ | {"MESH_LLM_CACHE": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(done.stdout.strip()) == binaries.folder_of(None, tmp_path)
    assert binaries.folder_of(None, tmp_path).parent.parent == tmp_path / "llama.cpp"  # under MESH_LLM_CACHE
    assert binaries.folder_of(tmp_path / "elsewhere", tmp_path) == tmp_path / "elsewhere"  # MESH_LLAMA_BIN wins


@pytest.mark.parametrize(
    ("pin", "flags", "patches"),
    [
        (PIN | {"version": "1.2.4"}, ["-DGGML_RPC=ON"], [b"a"]),
        (PIN, ["-DGGML_RPC=ON", "-DGGML_CUDA=ON"], [b"a"]),
        (PIN | {"targets": ["llama-server"]}, ["-DGGML_RPC=ON"], [b"a"]),
        (PIN, ["-DGGML_RPC=ON"], [b"b"]),
        (PIN, ["-DGGML_RPC=ON"], [b"a", b"c"]),
    ],
    ids=["version", "flags", "targets", "patch", "another patch"],
)
def test_every_input_of_a_build_changes_its_key(pin: dict[str, object], flags: list[str], patches: list[bytes]) -> None:
    base = llama_pin.cache_key(PIN, ["-DGGML_RPC=ON"], [b"a"])
    assert base.startswith("1.2.3-")
    assert llama_pin.cache_key(pin, flags, patches) != base
    assert llama_pin.cache_key(PIN, ["-DGGML_RPC=ON"], [b"a"]) == base  # and nothing else does

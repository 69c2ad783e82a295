"""Where the llama.cpp binaries are: the folder MESH_LLAMA_BIN names, else the pinned build's folder
under the node's cache (MESH_LLM_CACHE; services/common/llama_pin.py names it as build.py does).

Owns the lookup only: building is llama.cpp/build.py's job, and nothing here runs it. The folder
is decided once (`folder_of`: by the CLI, which hands it to the runner as MESH_RUNNER_LLAMA_BIN,
or by the runner at start when started without the CLI) and passed to everything that starts a binary.
"""

from __future__ import annotations

from pathlib import Path

from services.common import llama_pin


class BinaryMissing(Exception):
    """A llama.cpp binary is not built; the message says how to build it."""


def folder_of(configured: Path | None, cache_root: Path) -> Path:
    """The folder the setting names, else where build.py puts the pinned build on this machine."""
    return configured or llama_pin.bin_dir(cache_root)


def binary(name: str, folder: Path) -> Path:
    path = folder / name
    if not path.is_file():
        raise BinaryMissing(f"{path} not found: run `make llama` (or set MESH_LLAMA_BIN)")
    return path


SERVING = ("llama-server", "ggml-rpc-server")  # what a node needs to serve or lend memory


def required(folder: Path) -> Path:
    """The folder, if it holds every binary a serving node runs; else BinaryMissing saying what to run."""
    missing = [name for name in SERVING if not (folder / name).is_file()]
    if missing:
        raise BinaryMissing(f"llama.cpp is not built ({', '.join(missing)} not in {folder}): run `make llama`, or set MESH_LLAMA_BIN to a folder that has them")
    return folder

"""Where the llama.cpp binaries are: MESH_LLAMA_BIN, else the cache llama.cpp/build.py fills
(under MESH_LLM_CACHE, default ~/.cache/mesh-llm: the build script's own rule, read from it).

Owns the lookup only; building is llama.cpp/build.py's job. The CLI resolves the folder once
(`required`) and hands it to the runner, so the node's services never look elsewhere.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "llama.cpp" / "build.py"


class BinaryMissing(Exception):
    """A llama.cpp binary is not built; the message says how to build it."""


def binary(name: str, configured: Path | None) -> Path:
    folder = configured or default_bin_dir()
    path = folder / name
    if not path.is_file():
        raise BinaryMissing(f"{path} not found: run `make llama` (or set MESH_LLAMA_BIN)")
    return path


SERVING = ("llama-server", "ggml-rpc-server")  # what a node needs to serve or lend memory


def required(configured: Path | None) -> Path:
    """The folder holding every binary a serving node runs, or BinaryMissing saying what to run."""
    folder = configured or default_bin_dir()
    missing = [name for name in SERVING if not (folder / name).is_file()]
    if missing:
        raise BinaryMissing(f"llama.cpp is not built ({', '.join(missing)} not in {folder}): run `make llama`, or set MESH_LLAMA_BIN to a folder that has them")
    return folder


def default_bin_dir() -> Path:
    spec = importlib.util.spec_from_file_location("mesh_llama_build", BUILD_SCRIPT)
    if spec is None or spec.loader is None:
        raise BinaryMissing(f"{BUILD_SCRIPT} is missing: set MESH_LLAMA_BIN")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build.CACHE_ROOT / "llama.cpp" / build.cache_key(build.build_flags()) / "bin"

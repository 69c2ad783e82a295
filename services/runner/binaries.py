"""Where the llama.cpp binaries are: MESH_LLAMA_BIN, else the cache llama.cpp/build.py fills.

Owns the lookup only; building is llama.cpp/build.py's job.
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


def default_bin_dir() -> Path:
    spec = importlib.util.spec_from_file_location("mesh_llama_build", BUILD_SCRIPT)
    if spec is None or spec.loader is None:
        raise BinaryMissing(f"{BUILD_SCRIPT} is missing: set MESH_LLAMA_BIN")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build.CACHE_ROOT / "llama.cpp" / build.cache_key(build.build_flags()) / "bin"

"""Where a build of the pinned llama.cpp lands: pin.json's data, the build's CMake flags, and the
cache key that names its folder (`<cache>/llama.cpp/<key>/bin`).

Shared by llama.cpp/build.py, which builds into that folder, and by the CLI and the runner, which
run what it built: both name the same folder and neither runs the other. Must not build, fetch or
start anything but the GPU probe, and must import nothing of ours and nothing outside the standard
library: build.py loads it before the virtual environment exists.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The repository's llama.cpp/ folder: pin.json, and the patches that are part of the key.
LLAMA_CPP = Path(__file__).resolve().parents[2] / "llama.cpp"


def read_pin(folder: Path = LLAMA_CPP) -> dict[str, Any]:
    """pin.json: the package, version, sdist and its sha256, CMake flags, targets."""
    pin: dict[str, Any] = json.loads((folder / "pin.json").read_text())
    return pin


def patches(folder: Path = LLAMA_CPP) -> list[Path]:
    """Our patches of llama.cpp, in the order they are applied."""
    return sorted((folder / "patches").glob("*.patch"))


def backend_flags() -> list[str]:
    """Metal on macOS, CUDA where nvcc and a GPU exist, CPU otherwise."""
    if platform.system() == "Darwin":
        return ["-DGGML_METAL=ON"]
    if shutil.which("nvcc") and shutil.which("nvidia-smi"):
        probe = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        if probe.returncode == 0 and "GPU" in probe.stdout:
            return ["-DGGML_CUDA=ON"]
    return []


def build_flags(pin: Mapping[str, Any], backend: Sequence[str]) -> list[str]:
    # Static binaries (BUILD_SHARED_LIBS=OFF in pin.json) need no rpath and can move freely.
    return [*pin["cmake_flags"], *backend]


def cache_key(pin: Mapping[str, Any], flags: Sequence[str], patch_texts: Sequence[bytes]) -> str:
    """`<version>-<hash>`: a build differs when the version, the flags, the targets or a patch does."""
    digest = hashlib.sha256()
    digest.update(str(pin["version"]).encode())
    digest.update("\0".join(flags).encode())
    digest.update("\0".join(pin["targets"]).encode())
    for text in patch_texts:
        digest.update(text)
    return f"{pin['version']}-{digest.hexdigest()[:12]}"


def build_dir(cache_root: Path, folder: Path = LLAMA_CPP) -> Path:
    """The folder build.py fills for this machine (its `bin/` holds the binaries)."""
    pin = read_pin(folder)
    key = cache_key(pin, build_flags(pin, backend_flags()), [patch.read_bytes() for patch in patches(folder)])
    return cache_root / "llama.cpp" / key


def bin_dir(cache_root: Path, folder: Path = LLAMA_CPP) -> Path:
    """Where the pinned build's binaries are on this machine, built or not."""
    return build_dir(cache_root, folder) / "bin"

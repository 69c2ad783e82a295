"""Priming an rpc-server's tensor cache from the GGUF on this node's disk, so that a split's host
sends hashes instead of weights (the cache holds `<LLAMA_CACHE>/rpc/<fnv1a64 as %016x>` files with
a tensor's bytes exactly as stored in the GGUF).

Owns which tensors belong to a worker, writing their cache files, and removing them when the
model is no longer served here (the cache is a second copy of the weights).
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gguf import GGUFReader

from services.runner.hashing import fnv1a64

_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class Primed:
    files: int
    bytes: int


def worker_layers(layers: tuple[int, ...], layer_count: int, worker_index: int) -> range:
    """The blocks worker `worker_index` holds: llama.cpp offloads the last sum(workers) layers and
    splits them over the RPC devices in --rpc order (`layers` is host first, then the workers)."""
    start = layer_count - sum(layers[1:]) + sum(layers[1 : 1 + worker_index])
    return range(start, start + layers[1 + worker_index])


def tensors_of(path: Path, blocks: range) -> list[tuple[str, int, int]]:
    """(name, offset in the file, size) of the tensors of the given blocks (the output layer stays
    on the host: see `llama_server_argv`)."""
    reader = GGUFReader(path)
    chosen = []
    for tensor in reader.tensors:
        match = _LAYER.match(tensor.name)
        if match and int(match.group(1)) in blocks:
            chosen.append((tensor.name, int(tensor.data_offset), int(tensor.n_bytes)))
    return chosen


def prime(path: Path, cache_dir: Path, blocks: range, manifest: Path, cache_root: Path) -> Primed:
    """Write the cache files of the blocks' tensors (skipping those present); list them in `manifest`.
    `cache_root` keeps the compiled hashing function (hashing.py)."""
    target = cache_dir / "rpc"
    target.mkdir(parents=True, exist_ok=True)
    written, total, names = 0, 0, []
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for _, offset, size in tensors_of(path, blocks):
            view = memoryview(data)[offset : offset + size]
            name = f"{fnv1a64(view, cache_root):016x}"
            names.append(name)
            file = target / name
            if not file.exists():
                partial = file.with_suffix(f".{os.getpid()}.tmp")
                partial.write_bytes(view)
                partial.replace(file)
                written += 1
            total += size
            view.release()
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(names))
    return Primed(written, total)


def unprime(cache_dir: Path, manifest: Path) -> int:
    """Remove the cache files a manifest lists; how many were removed."""
    if not manifest.exists():
        return 0
    removed = 0
    for name in manifest.read_text().split():
        file = cache_dir / "rpc" / name
        if file.exists():
            file.unlink()
            removed += 1
    manifest.unlink()
    return removed

"""Priming an rpc-server's tensor cache from the GGUF on this node's disk, so that a split's host
sends hashes instead of weights (the cache holds `<LLAMA_CACHE>/rpc/<fnv1a64 as %016x>` files with
a tensor's bytes exactly as stored in the GGUF), and the host's list of those hashes, so that its
llama-server need not hash gigabytes itself on each load (GGML_RPC_HASHES, llama.cpp/patches/0005).

Owns which tensors belong to a worker, hashing them (on every core), writing their cache files,
and removing them when the model is no longer served here (the cache is a second copy of the weights).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from services.runner.hashing import fnv1a64
from services.runner.models import tensor_table

_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class Primed:
    files: int
    bytes: int


def worker_layers(layers: tuple[int, ...], layer_count: int, worker_index: int, host_last: bool = False) -> range:
    """The blocks worker `worker_index` holds (`layers` is host first, then the workers, in --rpc
    order). A host on its CPU keeps the first blocks: llama.cpp offloads the last sum(workers) and
    splits them over the RPC devices in order. A host with a GPU (`host_last`) offloads every block,
    the RPC devices first: the workers hold the first blocks, the host the last ones
    (command.llama_server_argv)."""
    before = sum(layers[1 : 1 + worker_index])
    start = before if host_last else layer_count - sum(layers[1:]) + before
    return range(start, start + layers[1 + worker_index])


def tensors_of(path: Path, blocks: range) -> list[tuple[str, int, int]]:
    """(name, offset in the file, size) of the tensors of the given blocks (the output layer stays
    on the host: see `llama_server_argv`), from the header's tensor table (models.tensor_table)."""
    chosen = []
    for name, offset, size in tensor_table(path):
        match = _LAYER.match(name)
        if match and int(match.group(1)) in blocks:
            chosen.append((name, offset, size))
    return chosen


def hashed(data: mmap.mmap, tensors: list[tuple[str, int, int]], cache_root: Path, threads: int) -> list[int]:
    """llama.cpp's hash of each tensor's bytes in the mapped file, `threads` tensors at a time (the
    native hash lets go of the GIL; one tensor's FNV-1a is byte-serial, ~1 GB/s)."""

    def one(offset: int, size: int) -> int:
        view = memoryview(data)[offset : offset + size]
        try:
            return fnv1a64(view, cache_root)
        finally:
            view.release()

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(one, [offset for _, offset, _ in tensors], [size for _, _, size in tensors]))


def prime(path: Path, cache_dir: Path, blocks: range, manifest: Path, cache_root: Path, threads: int = 1) -> Primed:
    """Write the cache files of the blocks' tensors (skipping those present); list them in `manifest`.
    `cache_root` keeps the compiled hashing function (hashing.py)."""
    target = cache_dir / "rpc"
    target.mkdir(parents=True, exist_ok=True)
    written, total, names = 0, 0, []
    tensors = tensors_of(path, blocks)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for (_, offset, size), hash_ in zip(tensors, hashed(data, tensors, cache_root, threads), strict=True):
            name = f"{hash_:016x}"
            names.append(name)
            file = target / name
            if not file.exists():
                view = memoryview(data)[offset : offset + size]
                partial = file.with_suffix(f".{os.getpid()}.tmp")
                partial.write_bytes(view)
                partial.replace(file)
                view.release()
                written += 1
            total += size
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(names))
    return Primed(written, total)


def hash_list(path: Path, blocks: range, folder: Path, cache_root: Path, threads: int = 1) -> Path:
    """The file a split host's llama-server reads in GGML_RPC_HASHES: "<hash> <size> <name>" of the
    blocks' tensors. Written once per model file (path, size, modification time) and blocks, kept
    in `folder` and reused while the file is unchanged: a wrong hash would load another tensor."""
    stat = path.stat()
    # The inode and change time too: a copy that keeps size and modification time (cp -p, rsync -a)
    # is another list.
    identity = f"{path.resolve()}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{blocks.start}-{blocks.stop}"
    target = folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:24]}.txt"
    if target.exists():
        return target
    tensors = tensors_of(path, blocks)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        hashes = hashed(data, tensors, cache_root, threads)
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text("".join(f"{hash_:016x} {size} {name}\n" for (name, _, size), hash_ in zip(tensors, hashes, strict=True)))
    partial.replace(target)
    return target


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

"""A model file's content fingerprint: what tells two GGUFs with the same name apart.

Nodes name models by file stem, and two different files can share one (a fine-tune and its base,
two quantizations renamed alike, a random-weight test model). Placement must never put such files
into one split or shard plan, so each node gossips a fingerprint of the file beside its name.

The recipe reads a fixed amount whatever the file's size (about 2 MiB in 17 reads): the size, the
first MiB (GGUF header: metadata, tokenizer, and usually the tensor table) and 16 blocks of 64 KiB
spread evenly from the start to the very end (tensor data). Sample offsets depend on the size only,
so two files of one size are compared at the same places. Files that differ anywhere in size,
header or weights (another fine-tune, quantization or seed changes every block) are told apart;
an edit confined to bytes between the samples is not, which is the price of not hashing gigabytes.

`sample_ranges` and `digest` are pure; `fingerprint_file` is the one function that reads a file.
Must not know about models, the mesh or placement.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

HEADER_BYTES = 1 << 20
SAMPLES = 16
BLOCK_BYTES = 64 << 10
# In the hash, so that a change of recipe makes old and new fingerprints differ instead of colliding.
RECIPE = b"mesh-llm model fingerprint 1\0"
DIGEST_BYTES = 8  # 16 hex characters: collisions between files that differ are out of reach


def sample_ranges(size: int) -> tuple[tuple[int, int], ...]:
    """(offset, length) of every range the fingerprint reads, in order; the whole file when small."""
    if size <= HEADER_BYTES + SAMPLES * BLOCK_BYTES:
        return ((0, size),)
    last = size - BLOCK_BYTES
    return ((0, HEADER_BYTES), *((last * i // (SAMPLES - 1), BLOCK_BYTES) for i in range(SAMPLES)))


def digest(size: int, chunks: Iterable[bytes]) -> str:
    """The fingerprint of a file of `size` bytes whose `sample_ranges(size)` hold `chunks`."""
    hasher = hashlib.sha256(RECIPE + size.to_bytes(8, "little"))
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()[: 2 * DIGEST_BYTES]


def fingerprint_file(path: Path) -> str:
    """The fingerprint of the file at `path` (reads about 2 MiB of it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return digest(size, (os.pread(fd, length, offset) for offset, length in sample_ranges(size)))
    finally:
        os.close(fd)

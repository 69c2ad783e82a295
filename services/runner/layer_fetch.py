"""Fetching from the Hugging Face Hub only the part of a GGUF that a split's worker needs.

A worker of a pipeline split runs llama.cpp's rpc-server for a contiguous range of blocks, and its
tensor cache is primed from the GGUF (priming.py). A worker with no copy of the model needs neither
the other blocks nor the embedding and output layers (those stay on the host), so it fetches with
ranged GETs only: the GGUF header (metadata and tensor table), the ranges the fingerprint reads (so
that fingerprint.fingerprint_file of the partial file is the Hub file's, which the host compares
with its own), and its blocks' tensors. They land at their own offsets in a sparse file of the
remote file's size, which priming reads exactly as a whole file.

Where: `<models_dir>/<repo>/.cache/mesh-llm/<file>.layers` (not *.gguf: the node lists every GGUF
under models_dir as a model it holds, and this one lacks most of its bytes), with a sidecar
`<file>.layers.json` recording the Hub's etag, the size and the byte ranges present. The sidecar is
written only after the bytes it claims are flushed to disk, so a cut never claims bytes it lacks;
the next call fetches only what is missing, for the same blocks or others, and a new etag (another
file at the same path) discards the partial file.

Single-file GGUFs only: a split GGUF (`-00001-of-0000N`) is refused with DownloadError.

The Hub's side is huggingface_hub's and downloads.py's (the HEAD, the token for the Hub's own host
only, the error messages). Owns the partial files and their sidecars; must not start processes or
touch the complete downloads beside them.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import WeakFileLock, hf_raise_for_status, http_stream_backoff

from services.common.model_names import split_parts
from services.runner import fingerprint
from services.runner.downloads import RemoteFile, _headers, _one_line, check_space, remote_file
from services.runner.hub_files import DownloadError
from services.runner.models import layer_count
from services.runner.priming import tensors_of, worker_layers

Ranges = tuple[tuple[int, int], ...]  # (start, stop) byte ranges, sorted, half-open

FIRST_HEADER_BYTES = 2 << 20  # holds most GGUFs' metadata and tensor table; a longer one doubles it
# Ranges closer than this are fetched as one: a request costs a round trip, a small gap only its bytes
# (tensors are separated by alignment padding of a few bytes).
GAP_BYTES = 64 << 10
# How often a long range records its progress: a cut loses at most this much of a big share.
COMMIT_BYTES = 64 << 20
_CHUNK_BYTES = 1 << 20
_GGUF_MAGIC = b"GGUF"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LayerFile:
    path: Path  # the partial GGUF: header and the blocks' tensors present, the rest holes
    blocks: range  # the blocks it holds (priming.worker_layers over the header's block_count)
    fetched_bytes: int  # bytes this call fetched from the Hub (0 when all was already there)
    held_bytes: int  # bytes of the file now present (header, fingerprint samples, tensors)
    size_bytes: int  # the whole remote file
    fingerprint: str  # fingerprint.py's fingerprint of the remote file


def layers_path(models_dir: Path, repo: str, file: str) -> Path:
    """Where the partial file of a Hub file goes (a name the node's *.gguf listing does not match)."""
    return models_dir / repo / ".cache" / "mesh-llm" / f"{file}.layers"


def fetch_layers(
    repo: str, file: str, models_dir: Path, layers: tuple[int, ...], worker_index: int, on_progress: Progress | None = None, host_last: bool = False
) -> LayerFile:
    """Fetch what worker `worker_index` of the split `layers` (host first, as priming.worker_layers;
    `host_last`: the host runs after the workers)
    lacks of `file` in `repo`: the header, the fingerprint's samples and its blocks' tensors.
    on_progress(done, total) counts this call's bytes; total grows once the header says which
    tensors are needed. DownloadError says in one line why it could not."""
    if split_parts(file)[2] > 1:
        raise DownloadError(f"{file} is a split GGUF: a worker fetches its layers from single-file GGUFs only")
    remote = remote_file(repo, file)
    path = layers_path(models_dir, repo, file)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The lock: two workers of one node (or a retry beside a running call) must not write one file at once.
    with WeakFileLock(path.with_name(path.name + ".lock")), _Partial(path, remote) as partial:
        fetcher = _Fetcher(remote, partial, on_progress)
        try:
            _fetch_header(fetcher, partial, remote.size_bytes)
            blocks = _blocks(path, file, layers, worker_index, host_last)
            fetcher.fetch(tuple((offset, offset + size) for _, offset, size in tensors_of(path, blocks)))
        except (httpx2.TransportError, HfHubHTTPError, OSError) as failure:
            # What arrived and was recorded stays: the next call fetches only the rest.
            raise DownloadError(f"fetching layers of {file} from {constants.ENDPOINT} failed, run again to resume: {_one_line(failure)}") from None
        held = sum(stop - start for start, stop in partial.ranges)
    return LayerFile(path, blocks, fetcher.done, held, remote.size_bytes, fingerprint.fingerprint_file(path))


def _blocks(path: Path, file: str, layers: tuple[int, ...], worker_index: int, host_last: bool) -> range:
    count = layer_count(path)
    if count == 0:
        raise DownloadError(f"{file}'s GGUF header does not say its block count: no layers to fetch")
    return worker_layers(layers, count, worker_index, host_last)


def _fetch_header(fetcher: _Fetcher, partial: _Partial, size: int) -> None:
    """The fingerprint's samples and the GGUF header, the latter grown until its tensor table is whole."""
    wanted = min(FIRST_HEADER_BYTES, size)
    fetcher.fetch(((0, wanted), *((offset, offset + length) for offset, length in fingerprint.sample_ranges(size))))
    if partial.read(0, len(_GGUF_MAGIC)) != _GGUF_MAGIC:
        raise DownloadError(f"{fetcher.remote.file} is not a GGUF file (it does not start with GGUF's magic)")
    while header_length(partial.read(0, wanted)) is None:
        if wanted == size:
            raise DownloadError(f"{fetcher.remote.file} is not a GGUF file (no complete GGUF header in its {size} bytes)")
        wanted = min(2 * wanted, size)
        fetcher.fetch(((0, wanted),))


def header_length(data: bytes) -> int | None:
    """Bytes of the header at the start of a GGUF's first bytes `data` (magic to the end of the
    tensor table), or None when `data` ends before it does."""
    try:
        _, tensor_count, kv_count = struct.unpack_from("<IQQ", data, 4)
        at = 24
        for _ in range(kv_count):
            at = _skip_string(data, at)
            (kind,) = struct.unpack_from("<I", data, at)
            at = _skip_value(data, kind, at + 4)
        for _ in range(tensor_count):
            at = _skip_string(data, at)
            (dimensions,) = struct.unpack_from("<I", data, at)
            at += 4 + 8 * dimensions + 4 + 8  # the dimensions, the type and the data offset
    except (struct.error, OverflowError):
        return None  # a read past the end of `data` (OverflowError: far past): the header goes on beyond it
    except RecursionError:  # arrays of arrays nested past Python's limit (12 bytes a level)
        raise DownloadError("the file's GGUF header nests arrays too deep") from None
    return at if at <= len(data) else None


# GGUF value types: bytes of each scalar (8 is a string, 9 an array).
_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def _skip_string(data: bytes, at: int) -> int:
    (length,) = struct.unpack_from("<Q", data, at)
    return at + 8 + length


def _skip_value(data: bytes, kind: int, at: int) -> int:
    if kind in _SCALAR_BYTES:
        return at + _SCALAR_BYTES[kind]
    if kind == _STRING:
        return _skip_string(data, at)
    if kind == _ARRAY:
        item, count = struct.unpack_from("<IQ", data, at)
        at += 12
        if item in _SCALAR_BYTES:
            return at + count * _SCALAR_BYTES[item]
        for _ in range(count):
            at = _skip_value(data, item, at)
        return at
    raise DownloadError(f"the file's GGUF header holds an unknown value type {kind}")


def coalesce(ranges: Iterable[tuple[int, int]], gap: int = 0) -> Ranges:
    """The ranges sorted, overlapping ones and those at most `gap` apart merged into one."""
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        elif stop > start:
            merged.append((start, stop))
    return tuple(merged)


def missing(wanted: Iterable[tuple[int, int]], present: Ranges) -> Ranges:
    """The bytes of `wanted` (any order; gaps up to GAP_BYTES between them included) not in
    `present`: bytes already held are never fetched again."""
    holes: list[tuple[int, int]] = []
    for start, stop in coalesce(wanted, GAP_BYTES):
        for held_start, held_stop in present:
            if held_start > start:
                holes.append((start, min(stop, held_start)))
            start = max(start, held_stop)
            if start >= stop:
                break
        if start < stop:
            holes.append((start, stop))
    return tuple(holes)


class _Partial:
    """The sparse file and its sidecar: which ranges are on disk, recorded only once flushed."""

    def __init__(self, path: Path, remote: RemoteFile) -> None:
        self.path = path
        self.sidecar = path.with_name(path.name + ".json")
        self.remote = remote
        self.ranges = self._recorded()
        if not self.ranges:
            # Nothing recorded for this content (none yet, or another etag): no byte of the file can be trusted.
            self.sidecar.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self.fd, remote.size_bytes)  # holes: the disk holds only what is written

    def _recorded(self) -> Ranges:
        if not (self.path.is_file() and self.sidecar.is_file()):
            return ()
        recorded = json.loads(self.sidecar.read_text())
        if recorded.get("etag") != self.remote.etag or recorded.get("size") != self.remote.size_bytes:
            return ()
        return coalesce(tuple(pair) for pair in recorded["ranges"])

    def __enter__(self) -> _Partial:
        return self

    def __exit__(self, *failure: object) -> None:
        os.close(self.fd)

    def read(self, start: int, stop: int) -> bytes:
        return os.pread(self.fd, stop - start, start)

    def write(self, at: int, chunk: bytes) -> None:
        written = 0
        while written < len(chunk):  # pwrite may write less than asked (interrupted by a signal)
            written += os.pwrite(self.fd, chunk[written:], at + written)

    def record(self, start: int, stop: int) -> None:
        """Claim [start, stop) in the sidecar, after flushing it to disk."""
        os.fsync(self.fd)
        self.ranges = coalesce((*self.ranges, (start, stop)))
        state = {"etag": self.remote.etag, "size": self.remote.size_bytes, "ranges": [list(pair) for pair in self.ranges]}
        temporary = self.sidecar.with_name(f"{self.sidecar.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(state))
        temporary.replace(self.sidecar)


class _Fetcher:
    """Ranged GETs of a remote file into a partial file, counting this call's bytes for on_progress."""

    def __init__(self, remote: RemoteFile, partial: _Partial, on_progress: Progress | None) -> None:
        self.remote, self.partial, self.on_progress = remote, partial, on_progress
        self.done, self.total = 0, 0

    def fetch(self, wanted: Iterable[tuple[int, int]]) -> None:
        """Fetch the bytes of `wanted` the partial file lacks (after checking the disk has room)."""
        holes = missing(wanted, self.partial.ranges)
        needed = sum(stop - start for start, stop in holes)
        check_space(self.partial.path.parent, needed)
        self.total += needed
        for start, stop in holes:
            self._fetch_range(start, stop)

    def _fetch_range(self, start: int, stop: int) -> None:
        # identity: a CDN may ignore a Range on a compressed answer (huggingface_hub's HEAD asks the same).
        headers = _headers(self.remote.url) | {"Range": f"bytes={start}-{stop - 1}", "Accept-Encoding": "identity"}
        with http_stream_backoff("GET", self.remote.url, headers=headers, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
            hf_raise_for_status(response)
            expected = f"bytes {start}-{stop - 1}/{self.remote.size_bytes}"
            if response.status_code != 206 or response.headers.get("Content-Range") != expected:
                raise DownloadError(
                    f"the storage of {self.remote.file} did not answer a byte range ({response.status_code}, Content-Range {response.headers.get('Content-Range')!r}, asked {expected})"
                )
            at, recorded = start, start
            for chunk in response.iter_bytes(chunk_size=_CHUNK_BYTES):
                self.partial.write(at, chunk[: stop - at])
                at = min(stop, at + len(chunk))
                self._advance(len(chunk))
                if at - recorded >= COMMIT_BYTES:
                    self.partial.record(recorded, at)
                    recorded = at
            self.partial.record(recorded, at)
        if at != stop:
            raise DownloadError(f"the storage of {self.remote.file} sent {at - start} of {stop - start} bytes at {start}, run again to resume")

    def _advance(self, count: int) -> None:
        self.done += count
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)

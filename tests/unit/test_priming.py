"""Priming: which blocks a worker holds, and cache files named by llama.cpp's FNV-1a hash."""

import os
from pathlib import Path

import pytest
from gguf import GGUFReader

from services.common.settings import NodeSettings
from services.runner.hashing import fnv1a64
from services.runner.models import resolve, tensor_table
from services.runner.priming import hash_list, prime, tensors_of, unprime, worker_layers
from tests.synthetic import DenseShape, write_dense


def python_fnv(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dense model (3 blocks, SmolLM2's vocabulary), written once for the module's tests."""
    folder = tmp_path_factory.mktemp("priming")
    return write_dense(folder / "tiny.gguf", DenseShape(layers=3, hidden=64, ffn=128, heads=4, kv_heads=2), resolve("SmolLM2-135M-Instruct", folder).path)


@pytest.mark.parametrize("data", [b"", b"a", b"hello world", bytes(range(256)) * 3])
def test_native_hash_matches_llama_cpps_fnv(data: bytes) -> None:
    assert fnv1a64(data, NodeSettings().cache) == python_fnv(data)


@pytest.mark.parametrize(
    ("layers", "count", "index", "blocks"),
    [
        ((17, 13), 30, 0, range(17, 30)),  # one worker takes the last 13 blocks
        ((10, 12, 8), 30, 0, range(10, 22)),
        ((10, 12, 8), 30, 1, range(22, 30)),
    ],
)
def test_worker_layers_are_the_tail_in_rpc_order(layers, count, index, blocks) -> None:
    assert worker_layers(layers, count, index) == blocks


@pytest.mark.parametrize(
    ("layers", "index", "blocks"),
    [
        ((17, 13), 0, range(0, 13)),  # a GPU host runs after its one worker
        ((10, 12, 8), 0, range(0, 12)),
        ((10, 12, 8), 1, range(12, 20)),  # the host's 10 blocks are 20-29
    ],
)
def test_behind_a_gpu_host_the_workers_hold_the_first_blocks_in_rpc_order(layers, index, blocks) -> None:
    assert worker_layers(layers, sum(layers), index, host_last=True) == blocks


def test_the_tensor_table_is_read_as_ggufs_reader_reads_it(model: Path) -> None:
    reader = GGUFReader(model)
    assert tensor_table(model) == [(t.name, int(t.data_offset), int(t.n_bytes)) for t in reader.tensors]


def test_prime_writes_each_tensor_of_the_workers_blocks_once_and_unprime_removes_them(tmp_path: Path, model: Path) -> None:
    chosen = tensors_of(model, range(1, 3))
    assert len(chosen) == 2 * 9 and all(name.startswith(("blk.1.", "blk.2.")) for name, _, _ in chosen)
    primed = prime(model, tmp_path / "cache", range(1, 3), tmp_path / "m.txt", NodeSettings().cache)
    assert primed.bytes == sum(size for _, _, size in chosen)
    files = sorted((tmp_path / "cache" / "rpc").iterdir())
    assert 0 < len(files) <= len(chosen)  # identical tensors (the norms) share one file
    name, offset, size = chosen[1]
    data = model.read_bytes()[offset : offset + size]
    assert (tmp_path / "cache" / "rpc" / f"{python_fnv(data):016x}").read_bytes() == data
    assert prime(model, tmp_path / "cache", range(1, 3), tmp_path / "m.txt", NodeSettings().cache).files == 0  # already there
    assert unprime(tmp_path / "cache", tmp_path / "m.txt") == len(files)
    assert list((tmp_path / "cache" / "rpc").iterdir()) == []


def test_the_hash_list_names_each_tensor_of_the_blocks_with_its_hash_and_follows_the_file(tmp_path: Path, model: Path) -> None:
    listed = hash_list(model, range(0, 2), tmp_path / "hashes", NodeSettings().cache, threads=4)
    content = model.read_bytes()
    expected = [f"{python_fnv(content[offset : offset + size]):016x} {size} {name}" for name, offset, size in tensors_of(model, range(0, 2))]
    assert listed.read_text().splitlines() == expected and len(expected) == 2 * 9
    # The same file and blocks: the list is reused; other blocks, or the file rewritten: another list.
    assert hash_list(model, range(0, 2), tmp_path / "hashes", NodeSettings().cache) == listed
    assert hash_list(model, range(1, 3), tmp_path / "hashes", NodeSettings().cache) != listed
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(content)
    os.utime(copy, ns=(1, 1))
    assert hash_list(copy, range(0, 2), tmp_path / "hashes", NodeSettings().cache) != listed


def test_priming_on_several_threads_names_files_as_on_one(tmp_path: Path, model: Path) -> None:
    prime(model, tmp_path / "one", range(0, 3), tmp_path / "one.txt", NodeSettings().cache, threads=1)
    # A fresh cache: the hashing function is built there by one of the threads, not by all at once.
    prime(model, tmp_path / "four", range(0, 3), tmp_path / "four.txt", tmp_path / "fresh-cache", threads=8)
    assert (tmp_path / "one.txt").read_text() == (tmp_path / "four.txt").read_text()

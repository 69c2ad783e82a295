"""Priming: which blocks a worker holds, and cache files named by llama.cpp's FNV-1a hash."""

from pathlib import Path

import pytest

from services.common.settings import NodeSettings
from services.runner.hashing import fnv1a64
from services.runner.models import resolve
from services.runner.priming import prime, tensors_of, unprime, worker_layers
from tests.synthetic import DenseShape, write_dense


def python_fnv(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


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


def test_prime_writes_each_tensor_of_the_workers_blocks_once_and_unprime_removes_them(tmp_path: Path) -> None:
    model = write_dense(tmp_path / "tiny.gguf", DenseShape(layers=3, hidden=64, ffn=128, heads=4, kv_heads=2), resolve("SmolLM2-135M-Instruct", tmp_path).path)
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

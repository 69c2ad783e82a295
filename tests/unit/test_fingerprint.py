"""A model file's fingerprint: cheap (a fixed amount read whatever the size) and different for
different files under one name."""

from pathlib import Path

import pytest

from services.common.records import ModelFile
from services.runner.fingerprint import BLOCK_BYTES, HEADER_BYTES, SAMPLES, digest, fingerprint_file, sample_ranges
from services.runner.models import model_files, resolve
from tests.conftest import SMOLLM2
from tests.synthetic import DenseShape, write_dense

SMALL = HEADER_BYTES + SAMPLES * BLOCK_BYTES  # up to this size the whole file is read


@pytest.mark.parametrize("size", [0, 1, 1000, SMALL])
def test_a_small_file_is_read_whole(size: int) -> None:
    assert sample_ranges(size) == ((0, size),)


@pytest.mark.parametrize("size", [SMALL + 1, 10**9, 10**11, 2**40 + 12345])
def test_a_big_file_is_read_in_a_fixed_amount_from_header_to_last_byte(size: int) -> None:
    ranges = sample_ranges(size)
    assert ranges[0] == (0, HEADER_BYTES)
    assert sum(length for _, length in ranges) == HEADER_BYTES + SAMPLES * BLOCK_BYTES  # 2 MiB for 1 GB or 1 TB
    assert all(0 <= offset and offset + length <= size for offset, length in ranges)
    assert ranges[-1][0] + ranges[-1][1] == size  # the tail is always sampled
    offsets = [offset for offset, _ in ranges[1:]]
    assert offsets == sorted(offsets) and offsets[-1] - offsets[0] == size - BLOCK_BYTES  # spread over the whole file


def _fingerprint_of_bytes(data: bytes) -> str:
    return digest(len(data), (data[offset : offset + length] for offset, length in sample_ranges(len(data))))


BASE = bytes(range(256)) * (4 * SMALL // 256)  # 8 MiB: sampled, not read whole
SAMPLED = sample_ranges(len(BASE))[5][0] + 7  # a byte inside a sampled block
BETWEEN = sample_ranges(len(BASE))[5][0] + BLOCK_BYTES + 1000  # a byte between two sampled blocks


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("other", "same"),
    [
        (BASE, True),  # the same bytes
        (_flip(BASE, 100), False),  # the header differs (metadata, tokenizer, tensor table)
        (_flip(BASE, SAMPLED), False),  # weights differ where sampled: another fine-tune or seed differs everywhere
        (_flip(BASE, len(BASE) - 1), False),  # the last byte is always read
        (BASE + b"\0", False),  # the size differs
        (_flip(BASE, BETWEEN), True),  # the price of reading 2 MiB: an edit between the samples goes unseen
    ],
)
def test_the_fingerprint_tells_files_apart_by_size_header_and_samples(other: bytes, same: bool) -> None:
    assert (_fingerprint_of_bytes(other) == _fingerprint_of_bytes(BASE)) is same


def test_the_file_wrapper_reads_what_the_pure_recipe_says(tmp_path: Path) -> None:
    for data in (b"GGUF", BASE):
        path = tmp_path / "f.gguf"
        path.write_bytes(data)
        assert fingerprint_file(path) == _fingerprint_of_bytes(data)
        assert len(fingerprint_file(path)) == 16


def test_two_random_weight_models_under_one_name_differ_and_a_copy_does_not(tmp_path: Path) -> None:
    tokenizer = resolve(SMOLLM2, tmp_path).path
    shape = DenseShape(layers=2, hidden=64, ffn=128, heads=4, kv_heads=2)
    for folder in "abc":
        (tmp_path / folder).mkdir()
    first = write_dense(tmp_path / "a" / "Tiny.gguf", shape, tokenizer, seed=0)
    second = write_dense(tmp_path / "b" / "Tiny.gguf", shape, tokenizer, seed=1)
    copy = tmp_path / "c" / "Tiny.gguf"
    copy.write_bytes(first.read_bytes())
    # Same name, same shape, same size, same header: only the weights differ.
    assert first.stat().st_size == second.stat().st_size > SMALL
    refs = [resolve(str(path), tmp_path) for path in (first, second, copy)]
    assert [ref.model_id for ref in refs] == ["Tiny"] * 3
    assert refs[0].fingerprint != refs[1].fingerprint
    assert refs[0].fingerprint == refs[2].fingerprint == fingerprint_file(first)
    assert model_files(refs[1:2]) == (ModelFile("Tiny", refs[1].fingerprint),)  # what the node gossips

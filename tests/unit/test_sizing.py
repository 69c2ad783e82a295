"""How a llama-server is sized to its node's memory: KV-cache tiers, context, slots, prompt cache, and
the shape read from a GGUF header."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFWriter

from services.cli.flags import UsageError, check
from services.runner.command import llama_server_argv
from services.runner.models import ModelError, resolve
from services.runner.sizing import GB, UNKNOWN, Shape, Sizing, kv_types, shape_of, size
from tests.conftest import SMOLLM2

GIB = 1024**3
# Qwen3-8B's attention: 36 layers, 8 KV heads of 128 -> 144 KiB of f16 cache per token.
QWEN3_8B = Shape(weights_bytes=int(8.7 * GB), layers=36, kv_heads=8, key_length=128, value_length=128, context_train=40960)


@pytest.mark.parametrize(
    ("weights", "types"),
    [
        (int(0.1 * GB), ("f16", "f16")),
        (int(4.9 * GB), ("f16", "f16")),
        (5 * GB, ("q8_0", "q4_0")),
        (int(49.9 * GB), ("q8_0", "q4_0")),
        (50 * GB, ("q4_0", "q4_0")),
        (140 * GB, ("q4_0", "q4_0")),
    ],
)
def test_kv_cache_types_follow_the_weights_tiers(weights: int, types: tuple[str, str]) -> None:
    assert kv_types(weights) == types


def test_the_kv_bytes_per_token_count_keys_and_values_of_every_layer() -> None:
    assert QWEN3_8B.kv_bytes_per_token("f16", "f16") == 36 * 8 * 128 * 2 * 2
    # q8_0: 34 bytes per 32 values; q4_0: 18.
    assert QWEN3_8B.kv_bytes_per_token("q8_0", "q4_0") == 36 * 8 * (128 * 34 / 32 + 128 * 18 / 32)


@pytest.mark.parametrize(
    ("memory", "context", "slots", "types"),
    [
        # An 80 GB card: 64K would fit, the model was trained for 40K: the largest tier under it, and
        # an f16 cache reaches it too (a quantized one is slower and would buy nothing).
        (80 * GIB, 32768, 16, ("f16", "f16")),
        # A 12 GB card: (12 GiB - 8.7 GB x 1.1) / 2 = 1.65 GB for the cache: at 58.5 KiB a token
        # (q8_0 keys, q4_0 values) 27K tokens, so 16K; in f16 (144 KiB) only 8K: the tier's types.
        (12 * GIB, 16384, 16, ("q8_0", "q4_0")),
        # An 11 GB card: 1.1 GB, 18K tokens: 16K still; 10.5 GB: 0.85 GB, 14K tokens: 8K.
        (11 * GIB, 16384, 16, ("q8_0", "q4_0")),
        (int(10.5 * GIB), 8192, 8, ("q8_0", "q4_0")),
        # Less than the weights: the smallest tier (llama.cpp offloads what fits), f16 as good as any.
        (4 * GIB, 4096, 4, ("f16", "f16")),
    ],
)
def test_context_slots_and_kv_types_from_the_memory_the_weights_leave(memory: int, context: int, slots: int, types: tuple[str, str]) -> None:
    sized = size(QWEN3_8B, memory)
    assert (sized.ctx_size, sized.parallel) == (context, slots)
    assert (sized.cache_type_k, sized.cache_type_v) == types
    assert sized.cache_ram_mib == 0


def test_a_model_trained_for_less_than_the_smallest_tier_gets_its_own_context() -> None:
    tiny = Shape(weights_bytes=10**8, layers=4, kv_heads=2, key_length=64, value_length=64, context_train=2048)
    assert size(tiny, 64 * GIB).ctx_size == 2048


def test_a_split_host_keeps_f16_and_the_smallest_context() -> None:
    assert size(QWEN3_8B, 80 * GIB, split=True) == Sizing(4096, "f16", "f16", 4, 0)


def test_settings_win_over_what_is_sized() -> None:
    assert size(QWEN3_8B, 80 * GIB, ctx_size=2000, kv_type="q8_0", parallel=2, cache_ram_mib=-1) == Sizing(2000, "q8_0", "q8_0", 2, -1)
    # Only the context given: the slots follow it.
    assert size(QWEN3_8B, 80 * GIB, ctx_size=65536).parallel == 16


def test_the_flags_share_one_kv_pool_between_the_slots_and_turn_the_ram_prompt_cache_off() -> None:
    argv = llama_server_argv(Path("s"), Path("m"), "m", 1, ctx_size=1, threads=1, device="", sizing=Sizing(16384, "q8_0", "q4_0", 8, 0))
    joined = " ".join(argv)
    assert "--ctx-size 16384 --cache-type-k q8_0 --cache-type-v q4_0 --parallel 8 --kv-unified --cache-ram 0" in joined
    assert argv.count("--ctx-size") == 1


def test_the_shape_of_smollm2_comes_from_its_header(tmp_path: Path) -> None:
    path = resolve(SMOLLM2, tmp_path).path
    shape = shape_of(path)
    assert shape == Shape(path.stat().st_size, layers=30, kv_heads=3, key_length=64, value_length=64, context_train=8192)
    # 23 KiB of f16 cache a token: on a big machine, all of its 8K.
    assert size(shape, 16 * GIB) == Sizing(8192, "f16", "f16", 8, 0)


def header(path: Path, **fields: int) -> Path:
    writer = GGUFWriter(path, "llama")
    for key, value in fields.items():
        writer.add_uint32(f"llama.{key}", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path


def test_missing_fields_default_from_the_others(tmp_path: Path) -> None:
    path = header(tmp_path / "m.gguf", block_count=2, embedding_length=256, **{"attention.head_count": 4})
    shape = shape_of(path)
    # No head_count_kv (or an array of them): one KV head per head; key length = embedding / heads.
    assert (shape.layers, shape.kv_heads, shape.key_length, shape.value_length, shape.context_train) == (2, 4, 64, 64, 0)
    assert size(shape, 64 * GIB).ctx_size == 4096


def test_a_split_gguf_weighs_all_its_parts(tmp_path: Path) -> None:
    first = header(tmp_path / "Big-00001-of-00002.gguf", block_count=2)
    (tmp_path / "Big-00002-of-00002.gguf").write_bytes(b"\0" * 1000)
    assert shape_of(first).weights_bytes == first.stat().st_size + 1000


def test_a_damaged_header_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\0\0\0" + b"\xff" * 10)
    with pytest.raises(ModelError):
        shape_of(bad)


@pytest.mark.parametrize("flag", ["--ctx-size=-1", "--parallel=-2"])
def test_a_negative_size_is_a_usage_error(flag: str) -> None:
    with pytest.raises(UsageError, match="must be positive"):
        check(["--model", "x", flag])


def test_an_unknown_cache_type_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="invalid choice: 'q3_k'"):
        check(["--model", "x", "--cache-type", "q3_k"])


def test_an_unreadable_model_is_sized_as_an_unknown_one() -> None:
    # The runner's fallback when a header cannot be read (llama-server then reports the file itself).
    assert size(UNKNOWN, 64 * GIB) == Sizing(4096, "f16", "f16", 4, 0)

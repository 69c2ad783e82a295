"""How a llama-server is sized to the memory it has: KV-cache types, context, slots, prompt cache.

Pure: the model's shape (read from its GGUF header by shape_of) and the node's memory in, the
llama-server flags out. Each choice can be overridden by a runner setting; 0 or "" means "sized here".

- KV-cache types by the weights' size (the seed's tiers): f16 under 5 GB, q8_0 keys and q4_0 values
  up to 50 GB, q4_0 both above; a big model's cache would otherwise take the memory its context needs.
  But f16 wherever it reaches the same context: a quantized cache is slower (an 8B model on an H100,
  16 streams: q8_0/q4_0 at 0.89x the tokens/s of f16, bench/device/gpu_table.py), so it is worth
  only the context it buys. A split keeps f16 (its cache sits on the workers' devices, sized by their
  memory, not this one's).
- Context: the largest of 4K..64K (never past what the model was trained for) whose cache fits in
  half the memory the weights leave (the other half: compute buffers, other models of the node).
- Slots: one per 1K tokens of context, 4 to 16, sharing one KV pool (--kv-unified): any request may
  use the whole context, and concurrent requests get a slot at once instead of queueing (measured on
  an H200: llama.cpp's default 4 slots made batches of 4-16 requests wait 0.1-2.9 s for their first
  token; 16 slots, 12-47 ms).
- Prompt cache in host RAM (--cache-ram) off: saving a slot's state there stalled the other streams'
  first tokens (the same measurement); a conversation keeps its slot's KV through the gateway's
  affinity routing instead.
- Flash attention: llama.cpp's own choice (auto: on where the backend has it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common.model_names import part_names
from services.runner.models import header_fields

GB = 1000**3
CONTEXTS = (4096, 8192, 16384, 32768, 65536)
SPLIT_CONTEXT = 4096  # a split's host: its workers' memory is not this node's to size from
SLOT_TOKENS = 1024  # context per slot when the slots are sized here
SLOTS = (4, 16)  # fewest and most slots sized here
# (weights up to, key type, value type): the KV-cache tiers by the weights' size.
KV_TIERS = ((5 * GB, "f16", "f16"), (50 * GB, "q8_0", "q4_0"))
KV_BIGGEST = ("q4_0", "q4_0")
# Bytes per cached element: f16, and ggml's 32-element blocks (q8_0: 32 bytes + a scale, q4_0: 16 + a scale).
TYPE_BYTES = {"f16": 2.0, "bf16": 2.0, "f32": 4.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32, "q5_0": 22 / 32, "q5_1": 24 / 32, "iq4_nl": 18 / 32}
HEADROOM = 0.10  # of the weights, for llama.cpp's compute buffers (as placement reserves)


@dataclass(frozen=True)
class Shape:
    """What sizing needs of a model, from its GGUF header."""

    weights_bytes: int
    layers: int
    kv_heads: int
    key_length: int
    value_length: int
    context_train: int  # 0: the header does not say

    def kv_bytes_per_token(self, key_type: str, value_type: str) -> float:
        return self.layers * self.kv_heads * (self.key_length * TYPE_BYTES[key_type] + self.value_length * TYPE_BYTES[value_type])


UNKNOWN = Shape(weights_bytes=0, layers=0, kv_heads=0, key_length=0, value_length=0, context_train=0)


@dataclass(frozen=True)
class Sizing:
    ctx_size: int
    cache_type_k: str
    cache_type_v: str
    parallel: int
    cache_ram_mib: int

    def flags(self) -> list[str]:
        return [
            "--ctx-size",
            str(self.ctx_size),
            "--cache-type-k",
            self.cache_type_k,
            "--cache-type-v",
            self.cache_type_v,
            "--parallel",
            str(self.parallel),
            "--kv-unified",
            "--cache-ram",
            str(self.cache_ram_mib),
        ]


def shape_of(path: Path) -> Shape:
    """The model's shape from its header (a split GGUF's size is all its parts'); ModelError for a
    file with no whole header."""
    fields = header_fields(path, lambda key: key == "general.architecture" or "." in key)
    arch = str(fields.get("general.architecture", ""))

    def number(key: str, default: int = 0) -> int:
        value = fields.get(f"{arch}.{key}", default)
        return int(value) if isinstance(value, int) and value > 0 else default

    heads = number("attention.head_count", 1)
    embedding = number("embedding_length")
    key_length = number("attention.key_length", embedding // heads)
    # head_count_kv is an array in models whose layers differ: a missing scalar counts as the heads.
    return Shape(
        weights_bytes=weights_bytes(path),
        layers=number("block_count"),
        kv_heads=number("attention.head_count_kv", heads),
        key_length=key_length,
        value_length=number("attention.value_length", key_length),
        context_train=number("context_length"),
    )


def weights_bytes(path: Path) -> int:
    parts = [path.parent / name for name in part_names(path.name)]
    return sum(part.stat().st_size for part in parts if part.is_file()) or path.stat().st_size


def kv_types(weights: int) -> tuple[str, str]:
    for limit, key_type, value_type in KV_TIERS:
        if weights < limit:
            return key_type, value_type
    return KV_BIGGEST


def size(shape: Shape, memory_bytes: int, *, split: bool = False, ctx_size: int = 0, kv_type: str = "", parallel: int = 0, cache_ram_mib: int = 0) -> Sizing:
    """The flags for a llama-server of `shape` on a node offering `memory_bytes`; the keyword
    settings (0 or "": sized here) win over the choice made here."""
    key_type, value_type = (kv_type, kv_type) if kv_type else ("f16", "f16") if split else kv_types(shape.weights_bytes)
    if not kv_type and not split and context(shape, memory_bytes, "f16", "f16") >= context(shape, memory_bytes, key_type, value_type):
        key_type, value_type = "f16", "f16"  # the tier's cache would buy no more context
    if not ctx_size:
        ctx_size = SPLIT_CONTEXT if split else context(shape, memory_bytes, key_type, value_type)
    if not parallel:
        parallel = min(max(ctx_size // SLOT_TOKENS, SLOTS[0]), SLOTS[1])
    return Sizing(ctx_size, key_type, value_type, parallel, cache_ram_mib)


def context(shape: Shape, memory_bytes: int, key_type: str, value_type: str) -> int:
    """The largest context whose cache fits half the memory the weights leave; at least the
    smallest tier, never past the model's trained context (a model trained for less gets that)."""
    trained = shape.context_train or CONTEXTS[0]
    spare = (memory_bytes - shape.weights_bytes * (1 + HEADROOM)) / 2
    per_token = shape.kv_bytes_per_token(key_type, value_type)
    fitting = [tokens for tokens in CONTEXTS if tokens * per_token <= spare and tokens <= trained]
    return max(fitting, default=min(CONTEXTS[0], trained))

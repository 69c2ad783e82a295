"""Random-weight GGUF models of any size, for tests and benchmarks that need shapes we cannot download.

A fixture, not part of the product: tests and bench/ import it (bench/ scripts put the repository
root on sys.path). Owns writing llama-shaped dense models and qwen3moe-shaped Mixture-of-Experts
models with the real SmolLM2 tokenizer, streaming one tensor at a time so a multi-GB file needs
only one tensor's worth of memory. The weights are noise (small normal values): llama-server loads
and generates from them; what it says is gibberish.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize

TOKENIZER_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template",
)


# Tensor kinds: weight matrices (f16 or Q8_0 noise), norms (f32 ones), routers (f32 noise: each
# expert gets a distinct preference, so some experts are used more than others), and an untied
# output matrix, larger, so that next-token distributions are peaked rather than near uniform (and
# not dominated by the input token, as a tied embedding makes them): comparisons of top-1 tokens
# between a model and its shards then mean something.
MATRIX, NORM, ROUTER, EMBEDDING = "matrix", "norm", "router", "embedding"


def _attention(block: int, hidden: int, heads: int, kv_heads: int) -> list[tuple[str, tuple[int, ...], str]]:
    """A block's attention tensors (grouped-query: kv_heads share the key and value projections)."""
    head = hidden // heads
    return [
        (f"blk.{block}.attn_norm.weight", (hidden,), NORM),
        (f"blk.{block}.attn_q.weight", (head * heads, hidden), MATRIX),
        (f"blk.{block}.attn_k.weight", (head * kv_heads, hidden), MATRIX),
        (f"blk.{block}.attn_v.weight", (head * kv_heads, hidden), MATRIX),
        (f"blk.{block}.attn_output.weight", (hidden, head * heads), MATRIX),
    ]


@dataclass(frozen=True)
class DenseShape:
    layers: int = 4
    hidden: int = 1024
    ffn: int = 2816
    heads: int = 16
    kv_heads: int = 4
    context: int = 4096
    quantization: str = "f16"  # f16 | q8_0

    def tensors(self, vocab: int) -> list[tuple[str, tuple[int, ...], str]]:
        """(name, numpy shape, kind) in file order; numpy shape is ggml's ne reversed."""
        names = [("token_embd.weight", (vocab, self.hidden), MATRIX), ("output_norm.weight", (self.hidden,), NORM)]
        for i in range(self.layers):
            names += [
                *_attention(i, self.hidden, self.heads, self.kv_heads),
                (f"blk.{i}.ffn_norm.weight", (self.hidden,), NORM),
                (f"blk.{i}.ffn_gate.weight", (self.ffn, self.hidden), MATRIX),
                (f"blk.{i}.ffn_up.weight", (self.ffn, self.hidden), MATRIX),
                (f"blk.{i}.ffn_down.weight", (self.hidden, self.ffn), MATRIX),
            ]
        return names


@dataclass(frozen=True)
class MoEShape:
    """qwen3moe: attention with per-head q/k norms, then a router over `experts` FFNs of which
    `experts_used` run per token (no shared expert)."""

    layers: int = 8
    hidden: int = 512
    expert_ffn: int = 256
    experts: int = 16
    experts_used: int = 2
    heads: int = 8
    kv_heads: int = 4
    context: int = 4096
    quantization: str = "f16"  # f16 | q8_0
    arch: str = "qwen3moe"

    def tensors(self, vocab: int) -> list[tuple[str, tuple[int, ...], str]]:
        head = self.hidden // self.heads
        names = [
            ("token_embd.weight", (vocab, self.hidden), MATRIX),
            ("output_norm.weight", (self.hidden,), NORM),
            ("output.weight", (vocab, self.hidden), EMBEDDING),
        ]
        for i in range(self.layers):
            names += [
                *_attention(i, self.hidden, self.heads, self.kv_heads),
                (f"blk.{i}.attn_q_norm.weight", (head,), NORM),
                (f"blk.{i}.attn_k_norm.weight", (head,), NORM),
                (f"blk.{i}.ffn_norm.weight", (self.hidden,), NORM),
                # The router stays f32 (llama.cpp's converters keep it unquantized).
                (f"blk.{i}.ffn_gate_inp.weight", (self.experts, self.hidden), ROUTER),
                (f"blk.{i}.ffn_gate_exps.weight", (self.experts, self.expert_ffn, self.hidden), MATRIX),
                (f"blk.{i}.ffn_up_exps.weight", (self.experts, self.expert_ffn, self.hidden), MATRIX),
                (f"blk.{i}.ffn_down_exps.weight", (self.experts, self.hidden, self.expert_ffn), MATRIX),
            ]
        return names


@dataclass(frozen=True)
class Tokenizer:
    """The tokenizer keys of a GGUF, decoded: (key, type, value) in TOKENIZER_KEYS' order."""

    fields: tuple[tuple[str, GGUFValueType, object], ...]
    vocab: int


@cache
def tokenizer_of(source: Path, modified_ns: int) -> Tokenizer:
    """Read once per file and process: GGUFReader takes ~5 s of CPU over SmolLM2's 49k tokens and
    merges, and the suite writes dozens of models with that tokenizer."""
    reader = GGUFReader(source)
    fields = tuple((key, field.types[0], _value(field)) for key in TOKENIZER_KEYS if (field := reader.fields.get(key)) is not None)
    return Tokenizer(fields, len(reader.fields["tokenizer.ggml.tokens"].data))


def write_dense(path: Path, shape: DenseShape, tokenizer_from: Path, seed: int = 0) -> Path:
    """Write a llama-architecture GGUF with random weights and the tokenizer of `tokenizer_from`."""
    tokenizer = tokenizer_of(tokenizer_from, tokenizer_from.stat().st_mtime_ns)
    writer = GGUFWriter(path, "llama")
    _common_keys(writer, tokenizer, path, shape.context, shape.hidden, shape.layers, shape.heads, shape.kv_heads)
    writer.add_feed_forward_length(shape.ffn)
    return _write_tensors(writer, shape.tensors(tokenizer.vocab), shape.quantization, seed, path)


def write_moe(path: Path, shape: MoEShape, tokenizer_from: Path, seed: int = 0) -> Path:
    """Write a qwen3moe GGUF with random weights (router included) and the real tokenizer."""
    tokenizer = tokenizer_of(tokenizer_from, tokenizer_from.stat().st_mtime_ns)
    writer = GGUFWriter(path, shape.arch)
    _common_keys(writer, tokenizer, path, shape.context, shape.hidden, shape.layers, shape.heads, shape.kv_heads)
    writer.add_feed_forward_length(shape.expert_ffn)
    writer.add_expert_feed_forward_length(shape.expert_ffn)
    writer.add_expert_count(shape.experts)
    writer.add_expert_used_count(shape.experts_used)
    return _write_tensors(writer, shape.tensors(tokenizer.vocab), shape.quantization, seed, path)


def _common_keys(writer: GGUFWriter, tokenizer: Tokenizer, path: Path, context: int, hidden: int, layers: int, heads: int, kv_heads: int) -> None:
    writer.add_name(path.stem)
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(tokenizer.vocab)
    for key, kind, value in tokenizer.fields:
        _add(writer, key, kind, value)


def _write_tensors(writer: GGUFWriter, layout: list[tuple[str, tuple[int, ...], str]], quantization: str, seed: int, path: Path) -> Path:
    quantized = quantization == "q8_0"
    for name, dims, kind in layout:
        if kind in (MATRIX, EMBEDDING) and quantized:
            byte_dims = (*dims[:-1], dims[-1] // 32 * 34)
            writer.add_tensor_info(name, byte_dims, np.dtype(np.uint8), int(np.prod(byte_dims)), raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            dtype = np.float16 if kind in (MATRIX, EMBEDDING) else np.float32
            writer.add_tensor_info(name, dims, np.dtype(dtype), int(np.prod(dims)) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for _name, dims, kind in layout:
        writer.write_tensor_data(_values(rng, dims, kind, quantized))
    writer.close()
    return path


def _values(rng: np.random.Generator, dims: tuple[int, ...], kind: str, quantized: bool) -> np.ndarray:
    if kind == NORM:
        return np.ones(dims, dtype=np.float32)  # identity scale keeps activations sane
    if kind == ROUTER:
        # A per-expert bias direction plus noise: a skewed, input-dependent choice of experts.
        return ((rng.standard_normal(dims, dtype=np.float32) + rng.standard_normal((dims[0], 1), dtype=np.float32)) * 0.05).astype(np.float32)
    values = rng.standard_normal(dims, dtype=np.float32) * (0.1 if kind == EMBEDDING else 0.02)
    return quantize(values, GGMLQuantizationType.Q8_0) if quantized else values.astype(np.float16)


def _value(field) -> object:
    """A GGUF field's value as the writer takes it: a list for an array, a str, or a number."""
    kind = field.types[0]
    if kind == GGUFValueType.ARRAY:
        item = field.types[1]
        return [bytes(field.parts[i]).decode() if item == GGUFValueType.STRING else field.parts[i].tolist()[0] for i in field.data]
    if kind == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode()
    return field.parts[field.data[0]].tolist()[0]


def _add(writer: GGUFWriter, key: str, kind: GGUFValueType, value) -> None:
    if kind == GGUFValueType.ARRAY:
        writer.add_array(key, value)
    elif kind == GGUFValueType.STRING:
        writer.add_string(key, value)
    else:
        writer.add_key_value(key, value, kind)


def _copy_field(writer: GGUFWriter, key: str, field) -> None:
    _add(writer, key, field.types[0], _value(field))


def with_chat_template(source: Path, out: Path, template: str) -> Path:
    """A copy of the real model `source` (same weights, same everything) whose GGUF carries another
    chat template: llama-server renders prompts, tools and tool calls by the template it finds there."""
    reader = GGUFReader(source)
    architecture = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    writer = GGUFWriter(out, architecture)
    for key, field in reader.fields.items():
        if not key.startswith("GGUF.") and key not in ("general.architecture", "tokenizer.chat_template"):
            _copy_field(writer, key, field)
    writer.add_chat_template(template)
    for tensor in reader.tensors:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(np.ascontiguousarray(tensor.data))
    writer.close()
    return out

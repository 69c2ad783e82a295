"""Random-weight GGUF models of any size, for tests and benchmarks that need shapes we cannot download.

Owns writing llama-shaped dense models with the real SmolLM2 tokenizer, streaming one tensor at a
time so a multi-GB file needs only one tensor's worth of memory. The weights are noise (small
normal values): llama-server loads and generates from them; what it says is gibberish.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize

TOKENIZER_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                  "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                  "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token",
                  "tokenizer.chat_template")


@dataclass(frozen=True)
class DenseShape:
    layers: int = 4
    hidden: int = 1024
    ffn: int = 2816
    heads: int = 16
    kv_heads: int = 4
    context: int = 4096
    quantization: str = "f16"  # f16 | q8_0

    def tensors(self, vocab: int) -> list[tuple[str, tuple[int, ...], bool]]:
        """(name, numpy shape, is a weight matrix) in file order; numpy shape is ggml's ne reversed."""
        kv = self.hidden // self.heads * self.kv_heads
        names = [("token_embd.weight", (vocab, self.hidden), True), ("output_norm.weight", (self.hidden,), False)]
        for i in range(self.layers):
            names += [
                (f"blk.{i}.attn_norm.weight", (self.hidden,), False),
                (f"blk.{i}.attn_q.weight", (self.hidden, self.hidden), True),
                (f"blk.{i}.attn_k.weight", (kv, self.hidden), True),
                (f"blk.{i}.attn_v.weight", (kv, self.hidden), True),
                (f"blk.{i}.attn_output.weight", (self.hidden, self.hidden), True),
                (f"blk.{i}.ffn_norm.weight", (self.hidden,), False),
                (f"blk.{i}.ffn_gate.weight", (self.ffn, self.hidden), True),
                (f"blk.{i}.ffn_up.weight", (self.ffn, self.hidden), True),
                (f"blk.{i}.ffn_down.weight", (self.hidden, self.ffn), True),
            ]
        return names


def write_dense(path: Path, shape: DenseShape, tokenizer_from: Path, seed: int = 0) -> Path:
    """Write a llama-architecture GGUF with random weights and the tokenizer of `tokenizer_from`."""
    reader = GGUFReader(tokenizer_from)
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    writer = GGUFWriter(path, "llama")
    writer.add_name(path.stem)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(vocab)
    _copy_tokenizer(reader, writer)
    quantized = shape.quantization == "q8_0"
    layout = shape.tensors(vocab)
    for name, dims, matrix in layout:
        if matrix and quantized:
            byte_dims = (*dims[:-1], dims[-1] // 32 * 34)
            writer.add_tensor_info(name, byte_dims, np.dtype(np.uint8), int(np.prod(byte_dims)), raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            dtype = np.float16 if matrix else np.float32
            writer.add_tensor_info(name, dims, np.dtype(dtype), int(np.prod(dims)) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for name, dims, matrix in layout:
        writer.write_tensor_data(_values(rng, dims, matrix, quantized))
    writer.close()
    return path


def _values(rng: np.random.Generator, dims: tuple[int, ...], matrix: bool, quantized: bool) -> np.ndarray:
    if not matrix:
        return np.ones(dims, dtype=np.float32)  # norms: identity scale keeps activations sane
    values = rng.standard_normal(dims, dtype=np.float32) * 0.02
    return quantize(values, GGMLQuantizationType.Q8_0) if quantized else values.astype(np.float16)


def _copy_tokenizer(reader: GGUFReader, writer: GGUFWriter) -> None:
    for key in TOKENIZER_KEYS:
        field = reader.fields.get(key)
        if field is None:
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            item = field.types[1]
            values = [bytes(field.parts[i]).decode() if item == GGUFValueType.STRING else field.parts[i].tolist()[0] for i in field.data]
            writer.add_array(key, values)
        elif kind == GGUFValueType.STRING:
            writer.add_string(key, bytes(field.parts[field.data[0]]).decode())
        else:
            writer.add_key_value(key, field.parts[field.data[0]].tolist()[0], kind)

"""Mixture-of-Experts GGUFs: detection from the header, and writing a shard that keeps some experts.

A shard is a standalone GGUF: every non-expert tensor unchanged; in each layer the expert tensors
(`ffn_{gate,up,down}_exps`), the router (`ffn_gate_inp`) and its bias (`exp_probs_b`) sliced to
that layer's experts along the expert axis; `expert_count` set to the shard's size and
`expert_used_count` clamped to it. Shared-expert tensors (`*_shexp`) stay whole. Written one tensor
at a time (a shard of a multi-GB model needs one tensor's worth of memory).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

from services.runner.models import header_fields

_EXPERT_TENSOR = re.compile(r"^blk\.(\d+)\.(ffn_(gate|up|down)_exps\.weight|ffn_gate_inp\.weight|exp_probs_b(\.bias)?)$")


@dataclass(frozen=True)
class MoEInfo:
    arch: str
    experts: int
    experts_used: int
    layers: int


def moe_info(path: Path) -> MoEInfo | None:
    """The model's expert layout from its header alone, or None for a dense model."""
    fields = header_fields(path, lambda key: key == "general.architecture" or key.endswith((".expert_count", ".expert_used_count", ".block_count")))
    arch = str(fields.get("general.architecture", ""))
    experts = int(fields.get(f"{arch}.expert_count", 0) or 0)  # type: ignore[call-overload]
    if experts <= 1:
        return None
    return MoEInfo(arch, experts, int(fields.get(f"{arch}.expert_used_count", 1) or 1), int(fields.get(f"{arch}.block_count", 0) or 0))  # type: ignore[call-overload]


def write_shard(full: Path, out: Path, experts: Sequence[Sequence[int]]) -> Path:
    """Write the shard of `full` that keeps `experts[layer]` (sorted ids, the same count in every layer)."""
    sizes = {len(layer) for layer in experts}
    if len(sizes) != 1:
        raise ValueError("a shard keeps the same number of experts in every layer")
    (size,) = sizes
    reader = GGUFReader(full)
    info = moe_info(full)
    if info is None:
        raise ValueError(f"{full} is not a Mixture-of-Experts model")
    tmp = out.with_name(out.name + ".tmp")
    writer = GGUFWriter(tmp, info.arch)
    overrides = {f"{info.arch}.expert_count": size, f"{info.arch}.expert_used_count": min(info.experts_used, size)}
    _copy_fields(reader, writer, overrides)
    keep = [np.asarray(sorted(layer), dtype=np.int64) for layer in experts]
    plan = []
    for tensor in reader.tensors:
        match = _EXPERT_TENSOR.match(tensor.name)
        data = tensor.data
        if match:
            data = data[keep[int(match.group(1))]]  # the expert axis is numpy's first (ggml's last)
        plan.append((tensor, data))
        writer.add_tensor_info(tensor.name, data.shape, data.dtype, data.nbytes, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in plan:
        writer.write_tensor_data(np.ascontiguousarray(data))
    writer.close()
    tmp.replace(out)
    return out


def _copy_fields(reader: GGUFReader, writer: GGUFWriter, overrides: dict[str, int]) -> None:
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        kind = field.types[0]
        if key in overrides:
            writer.add_key_value(key, overrides[key], kind)
        elif kind == GGUFValueType.ARRAY:
            item = field.types[1]
            if item == GGUFValueType.STRING:
                values = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
            else:
                values = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_array(key, values)
        elif kind == GGUFValueType.STRING:
            writer.add_string(key, bytes(field.parts[field.data[0]]).decode("utf-8", "replace"))
        else:
            writer.add_key_value(key, field.parts[field.data[0]].tolist()[0], kind)

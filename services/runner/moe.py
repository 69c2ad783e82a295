"""Mixture-of-Experts GGUFs: detection from the header, and writing a shard that keeps some experts.

A shard is a standalone GGUF: every non-expert tensor unchanged; in each layer the expert tensors
(`ffn_{gate,up,down}_exps`), the router (`ffn_gate_inp`) and its bias (`exp_probs_b`) sliced to
that layer's experts along the expert axis; `expert_count` set to the shard's size and
`expert_used_count` clamped to it. Shared-expert tensors (`*_shexp`) stay whole. Written one tensor
at a time (a shard of a multi-GB model needs one tensor's worth of memory).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import SupportsInt, cast

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

from services.runner import binaries
from services.runner.models import ModelError, header_fields, layer_count, tensor_sizes

# A short mixed text (prose, code, Q&A, several languages) to count which experts tokens reach.
CALIBRATION = Path(__file__).parent / "data" / "calibration.txt"

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
    experts = _count(fields.get(f"{arch}.expert_count"), 0)
    if experts <= 1:
        return None
    return MoEInfo(arch, experts, _count(fields.get(f"{arch}.expert_used_count"), 1), _count(fields.get(f"{arch}.block_count"), 0))


def _count(value: object, absent: int) -> int:
    """A count from the header (gguf gives numpy integers), or `absent` where the key is missing or 0."""
    if value is None:
        return absent
    try:
        return int(cast(SupportsInt, value)) or absent
    except (TypeError, ValueError, OverflowError):  # a damaged header's: text, NaN or infinity where a count belongs
        raise ModelError(f"the GGUF header holds {value!r} where a count belongs") from None


@dataclass(frozen=True)
class Ranking:
    order: tuple[tuple[int, ...], ...]  # per layer: every expert id, most used first
    source: str  # imatrix (router statistics on the calibration text) | router-norm heuristic


def rank_experts(path: Path, info: MoEInfo, cache_dir: Path, llama_bin: Path, threads: int = 2) -> Ranking:
    """Per-layer expert ranking from llama-imatrix's per-expert token counts on the calibration
    text, cached per model file; if imatrix cannot run, router row norms (marked as a heuristic)."""
    stat = path.stat()
    cache = cache_dir / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}.ranking.json"
    if cache.is_file():
        saved = json.loads(cache.read_text())
        return Ranking(tuple(tuple(layer) for layer in saved["order"]), saved["source"])
    try:
        ranking = _imatrix_ranking(path, info, llama_bin, threads)
    except (binaries.BinaryMissing, subprocess.SubprocessError, OSError, KeyError, ValueError):
        ranking = _router_ranking(path, info)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"order": ranking.order, "source": ranking.source}))
    return ranking


def _imatrix_ranking(path: Path, info: MoEInfo, llama_bin: Path, threads: int) -> Ranking:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "imatrix.gguf"
        subprocess.run(
            [
                str(binaries.binary("llama-imatrix", llama_bin)),
                "-m",
                str(path),
                "-f",
                str(CALIBRATION),
                "-o",
                str(out),
                "-c",
                "128",
                "--no-ppl",
                "-t",
                str(threads),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        counts = {t.name: np.asarray(t.data, dtype=np.float64).ravel() for t in GGUFReader(out).tensors if t.name.endswith("_exps.weight.counts")}
    order = []
    for layer in range(info.layers):
        seen = next(
            (counts[f"blk.{layer}.ffn_{part}_exps.weight.counts"] for part in ("up", "gate", "down") if f"blk.{layer}.ffn_{part}_exps.weight.counts" in counts),
            np.zeros(1),
        )
        per_expert = seen if seen.size == info.experts else np.full(info.experts, seen[0])  # one value: all equal
        order.append(tuple(sorted(range(info.experts), key=lambda e: (-per_expert[e], e))))
    return Ranking(tuple(order), "imatrix")


def _router_ranking(path: Path, info: MoEInfo) -> Ranking:
    routers = {t.name: np.asarray(t.data, dtype=np.float32) for t in GGUFReader(path).tensors if t.name.endswith("ffn_gate_inp.weight")}
    order = []
    for layer in range(info.layers):
        norms = np.linalg.norm(routers[f"blk.{layer}.ffn_gate_inp.weight"].reshape(info.experts, -1), axis=1)
        order.append(tuple(sorted(range(info.experts), key=lambda e: (-norms[e], e))))
    return Ranking(tuple(order), "router-norm heuristic")


def shard_path(folder: Path, full: Path, experts: Sequence[Sequence[int]]) -> Path:
    """Where the shard of `full` keeping `experts` is cached (written once, reused)."""
    stat = full.stat()
    digest = hashlib.sha256(json.dumps([stat.st_size, stat.st_mtime_ns, [list(layer) for layer in experts]]).encode()).hexdigest()[:16]
    return folder / f"{full.stem}.shard-{len(experts[0])}x-{digest}.gguf"


@dataclass(frozen=True)
class ModelFacts:
    layers: int
    size_bytes: int
    moe: MoEInfo | None = None
    expert_bytes: int = 0  # one expert of one layer
    trunk_bytes: int = 0  # everything but the experts
    ranking: Ranking | None = None


def model_facts(path: Path, cache_dir: Path, llama_bin: Path, threads: int = 2) -> ModelFacts:
    """What placement needs to plan a model: its size and layers; for MoE, its experts and their ranking."""
    size = path.stat().st_size
    info = moe_info(path)
    if info is None:
        return ModelFacts(layer_count(path), size)
    experts = sum(n for name, n in tensor_sizes(path).items() if name.endswith("_exps.weight"))
    ranking = rank_experts(path, info, cache_dir, llama_bin, threads)
    return ModelFacts(info.layers, size, info, experts // max(1, info.experts * info.layers), size - experts, ranking)


def write_shard(full: Path, out: Path, experts: Sequence[Sequence[int]]) -> Path:
    """Write the shard of `full` that keeps `experts[layer]` (sorted ids, the same count in every
    layer); an existing file at `out` is that shard already (names carry a digest: shard_path)."""
    if out.is_file():
        return out
    sizes = {len(layer) for layer in experts}
    if len(sizes) != 1:
        raise ValueError("a shard keeps the same number of experts in every layer")
    (size,) = sizes
    reader = GGUFReader(full)
    info = moe_info(full)
    if info is None:
        raise ValueError(f"{full} is not a Mixture-of-Experts model")
    out.parent.mkdir(parents=True, exist_ok=True)
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

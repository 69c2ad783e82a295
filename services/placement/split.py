"""Splitting a dense model that fits no single node over several (pipeline parallel over RPC).

Pure: from the model's needs, the nodes that hold its GGUF (with the memory they offer) and the
RTTs between them, decide solo, split or unserved. Only holders of the same file count: one whose
file under this name has another fingerprint holds another model (its layers would not fit ours)
and is left out, named in the reason. The host is the elected holder (holders.elect), unless the
caller names it; workers are the nearest peers (RTT at most 80 ms) added until the group fits;
layers are given in proportion to memory, the host included. No I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from services.common.records import Mode
from services.placement.holders import Holder, elect, other_files, same_file
from services.placement.memory import GIB, memory_needed

MAX_RTT_SECONDS = 0.080
RTT_BUCKET_SECONDS = 0.010  # RTTs within one bucket count as equal, so jitter does not reorder workers


@dataclass(frozen=True)
class SplitPlan:
    mode: Literal[Mode.SOLO, Mode.SPLIT_HOST, Mode.UNSERVED]  # a split names its host and workers
    host: str = ""
    workers: tuple[str, ...] = ()
    layers: dict[str, int] = field(default_factory=dict)  # node id -> layers, host included
    reason: str = ""


def plan_split(
    size_bytes: int,
    layer_count: int,
    holders: Sequence[Holder],
    rtt: Callable[[str, str], float | None],
    force_split: bool = False,
    headroom: float = 0.10,
    context_bytes: int = 0,
    max_rtt: float = MAX_RTT_SECONDS,
    fingerprint: str = "",
    host_id: str = "",
) -> SplitPlan:
    """Where one model runs. `rtt(a, b)` is the measured round trip in seconds, None if unknown;
    `fingerprint` is the planning node's file: holders of any other file are never in the plan."""
    need = memory_needed(size_bytes, headroom, context_bytes)
    holders, others = same_file(holders, fingerprint)
    # The caller may name the host (decide.py: a node that was only asked to lend never hosts).
    host = next((h for h in holders if h.node_id == host_id), None) or elect([h for h in holders if not h.fetches])
    if host is None:
        return SplitPlan(Mode.UNSERVED, reason="no node has the model on disk" + other_files(others, fingerprint))
    if need <= host.memory and not force_split:
        return SplitPlan(Mode.SOLO, host.node_id, (), {host.node_id: layer_count}, f"fits on {host.node_id}")
    near = [h for h in holders if h is not host and (r := rtt(host.node_id, h.node_id)) is not None and r <= max_rtt]
    # Holders of the file before nodes that would fetch their layers from the Hub (the nearest first in each).
    near.sort(key=lambda h: (h.fetches, int((rtt(host.node_id, h.node_id) or 0.0) / RTT_BUCKET_SECONDS), h.node_id))
    group, offered = [host], host.memory
    for worker in near:
        if offered >= need and len(group) > 1:
            break
        group.append(worker)
        offered += worker.memory
    if offered < need or len(group) == 1:
        far = len(holders) - 1 - len(near)
        return SplitPlan(
            Mode.UNSERVED,
            host.node_id,
            reason=(
                f"needs {need / GIB:.2f} GiB; {host.node_id} and {len(group) - 1} peer(s) within {max_rtt * 1000:.0f} ms "
                f"offer {offered / GIB:.2f} GiB" + (f" ({far} more too far away)" if far else "") + other_files(others, fingerprint)
            ),
        )
    group = group[:layer_count]  # a node gets at least one layer
    layers = proportional_layers([h.memory for h in group], layer_count)
    return SplitPlan(
        Mode.SPLIT_HOST,
        host.node_id,
        tuple(h.node_id for h in group[1:]),
        dict(zip([h.node_id for h in group], layers, strict=True)),
        f"needs {need / GIB:.2f} GiB: split over {len(group)} nodes",
    )


def proportional_layers(memories: Sequence[int], layer_count: int) -> list[int]:
    """Layers per node in proportion to memory (largest remainder), every node at least one."""
    total = sum(memories)
    shares = [layer_count * m / total for m in memories]
    layers = [max(1, int(share)) for share in shares]
    while sum(layers) > layer_count:
        index = max((i for i, n in enumerate(layers) if n > 1), key=lambda i: layers[i] - shares[i])
        layers[index] -= 1
    while sum(layers) < layer_count:
        index = max(range(len(layers)), key=lambda i: shares[i] - layers[i])
        layers[index] += 1
    return layers

"""Splitting a Mixture-of-Experts model by experts: which experts each node's shard keeps, per layer.

A pure function. Each node's shard keeps the whole trunk and, in every layer, the same number of
experts: as many as its memory allows (so shard sizes follow memory), at least
max(4 x experts-per-token, floor) so quality stays close to the full model. Per layer, a core of the
most-used experts (by that layer's ranking) is on every shard, as large as coverage allows; the
rest are spread by rank so that every expert lives on at least one shard (two when there are three
or more nodes and room for it); spare room is filled with the most-used experts a shard lacks.
No I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ShardPlan:
    nodes: tuple[str, ...]
    experts: tuple[tuple[tuple[int, ...], ...], ...]  # per node, per layer: sorted expert ids
    core: tuple[int, ...]  # core size per layer
    copies: int  # every expert is on at least this many shards

    def shard(self, node_id: str) -> tuple[tuple[int, ...], ...]:
        return self.experts[self.nodes.index(node_id)]


@dataclass(frozen=True)
class NoShards:
    reason: str


def minimum_experts(experts: int, experts_used: int, floor: int = 0) -> int:
    return min(experts, max(4 * experts_used, floor))


def plan_shards(ranking: Sequence[Sequence[int]], experts_used: int, capacity: Sequence[tuple[str, int]], floor: int = 0) -> ShardPlan | NoShards:
    """`ranking`: per layer, every expert id, most used first. `capacity`: (node id, how many
    experts per layer its memory holds), in a stable order."""
    if not ranking or not capacity:
        return NoShards("nothing to plan")
    total = len(ranking[0])
    least = minimum_experts(total, experts_used, floor)
    sizes = [min(total, room) for _, room in capacity]
    small = [(node, room) for (node, room), size in zip(capacity, sizes, strict=True) if size < least]
    if small:
        node, room = small[0]
        return NoShards(f"node {node} has room for {room} experts per layer; a shard needs at least {least}")
    copies = 2 if len(capacity) >= 3 and sum(sizes) >= 2 * total else 1
    if sum(sizes) < copies * total:
        return NoShards(f"the nodes hold {sum(sizes)} experts per layer together; the model has {total}")
    n = len(sizes)
    # The largest core with room left for every other expert `copies` times.
    core = min(sizes) if n == copies else min(min(sizes), (sum(sizes) - copies * total) // (n - copies))
    per_layer = [_layer(order, sizes, core, copies) for order in ranking]
    experts = tuple(tuple(layer[i] for layer in per_layer) for i in range(n))
    return ShardPlan(tuple(node for node, _ in capacity), experts, tuple(core for _ in ranking), copies)


def _layer(order: Sequence[int], sizes: Sequence[int], core: int, copies: int) -> list[tuple[int, ...]]:
    held = [set(order[:core]) for _ in sizes]
    room = [size - core for size in sizes]
    for expert in order[core:]:
        # The shards with the most room left take it (ties: the earlier node), `copies` of them.
        takers = sorted((i for i in range(len(sizes)) if room[i] > 0), key=lambda i: (-room[i], i))[:copies]
        for i in takers:
            held[i].add(expert)
            room[i] -= 1
    for i, left in enumerate(room):
        # Spare room: the most-used experts this shard lacks.
        extra = [e for e in order if e not in held[i]][:left]
        held[i].update(extra)
    return [tuple(sorted(h)) for h in held]

"""plan_shards(): which experts each node keeps, per layer."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.placement.moe import NoShards, ShardPlan, minimum_experts, plan_shards


def rankings(layers: int, experts: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [rng.sample(range(experts), experts) for _ in range(layers)]


@pytest.mark.parametrize(
    ("capacity", "copies", "sizes"),
    [
        ([("a", 16), ("b", 16)], 1, [16, 16]),  # room for everything: full shards
        ([("a", 10), ("b", 10)], 1, [10, 10]),
        ([("a", 12), ("b", 8)], 1, [12, 8]),  # sizes follow memory
        ([("a", 12), ("b", 12), ("c", 12)], 2, [12, 12, 12]),  # three nodes: every expert twice
        ([("a", 9), ("b", 9), ("c", 9)], 1, [9, 9, 9]),  # not room for two copies: one
        ([("a", 40), ("b", 9)], 1, [16, 9]),  # never more than the model's experts
    ],
)
def test_shard_sizes_and_copies(capacity, copies, sizes) -> None:
    plan = plan_shards(rankings(8, 16), 2, capacity)
    assert isinstance(plan, ShardPlan)
    assert plan.copies == copies
    assert [len(plan.experts[i][0]) for i in range(len(capacity))] == sizes
    for layer in range(8):
        held = [e for node in plan.experts for e in node[layer]]
        assert all(held.count(e) >= copies for e in range(16))


@pytest.mark.parametrize(
    ("capacity", "reason"),
    [
        ([("a", 7), ("b", 16)], "node a has room for 7 experts per layer; a shard needs at least 8"),
        ([("a", 8), ("b", 7)], "node b"),
        ([("a", 8)], "the nodes hold 8 experts per layer together; the model has 16"),
    ],
)
def test_not_enough_room_says_why(capacity, reason) -> None:
    plan = plan_shards(rankings(4, 16), 2, capacity)
    assert isinstance(plan, NoShards) and reason in plan.reason


def test_core_is_each_layers_most_used_experts_on_every_shard_and_lists_differ_per_layer() -> None:
    ranking = rankings(6, 16, seed=3)
    plan = plan_shards(ranking, 2, [("a", 10), ("b", 10)])
    assert plan.core == (4,) * 6  # 10 + 10 - 16 = 4 experts of room on both
    for layer, order in enumerate(ranking):
        assert set(order[:4]) <= set(plan.experts[0][layer]) & set(plan.experts[1][layer])
    assert len({plan.experts[0][layer] for layer in range(6)}) > 1


def test_a_floor_raises_the_minimum() -> None:
    assert minimum_experts(16, 2, floor=12) == 12
    assert isinstance(plan_shards(rankings(2, 16), 2, [("a", 10), ("b", 16)], floor=12), NoShards)


@given(st.integers(1, 6), st.integers(4, 64), st.integers(1, 4), st.lists(st.integers(1, 80), min_size=1, max_size=5), st.integers(0, 9))
def test_every_expert_lives_somewhere_and_every_shard_is_big_enough(layers, experts, used, rooms, seed) -> None:
    capacity = [(f"n{i}", room) for i, room in enumerate(rooms)]
    plan = plan_shards(rankings(layers, experts, seed), used, capacity)
    if isinstance(plan, NoShards):
        least = minimum_experts(experts, used)
        assert min(rooms) < least or sum(min(r, experts) for r in rooms) < experts
        return
    for node, (_, room) in zip(plan.experts, capacity, strict=False):
        sizes = {len(layer) for layer in node}
        assert len(sizes) == 1  # the same count in every layer: one expert_count per shard file
        (size,) = sizes
        assert minimum_experts(experts, used) <= size <= min(room, experts)
    for layer in range(layers):
        held = [e for node in plan.experts for e in node[layer]]
        assert all(held.count(e) >= plan.copies for e in range(experts))
        assert all(len(set(node[layer])) == len(node[layer]) for node in plan.experts)

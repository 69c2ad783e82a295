import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.placement.holders import Holder
from services.placement.memory import GIB
from services.placement.split import plan_split, proportional_layers

RTT = {frozenset(("a", "b")): 0.002, frozenset(("a", "c")): 0.010, frozenset(("a", "d")): 0.120, frozenset(("b", "c")): 0.005}


def rtt(x: str, y: str) -> float | None:
    return RTT.get(frozenset((x, y)))


def holders(**memory_gib: float) -> list[Holder]:
    return [Holder(node_id, int(gib * GIB)) for node_id, gib in memory_gib.items()]


@pytest.mark.parametrize(
    ("size_gib", "nodes", "force", "mode", "host", "workers"),
    [
        (1, holders(a=4, b=2), False, "solo", "a", ()),  # fits the biggest node
        (1, holders(a=4, b=2), True, "split-host", "a", ("b",)),  # --split forces it
        (5, holders(a=4, b=2), False, "split-host", "a", ("b",)),
        (5, holders(a=4, b=3, c=3), False, "split-host", "a", ("b",)),  # nearest first, stop once it fits
        (8, holders(a=4, b=3, c=3), False, "split-host", "a", ("b", "c")),
        (5, holders(a=4, d=4), False, "unserved", "a", ()),  # d is 120 ms away: never in a split
        (20, holders(a=4, b=3, c=3), False, "unserved", "a", ()),  # not enough memory in the mesh
        (1, [], False, "unserved", "", ()),
        (5, holders(b=4, a=4, c=1), False, "split-host", "a", ("b",)),  # equal memory: lowest id hosts
    ],
)
def test_solo_split_or_unserved(size_gib, nodes, force, mode, host, workers) -> None:
    plan = plan_split(int(size_gib * GIB), 30, nodes, rtt, force_split=force, headroom=0.1, context_bytes=0)
    assert (plan.mode, plan.host, plan.workers) == (mode, host, workers), plan.reason
    if mode == "split-host":
        assert sum(plan.layers.values()) == 30 and min(plan.layers.values()) >= 1
        assert list(plan.layers) == [host, *workers]


def test_unserved_says_why() -> None:
    plan = plan_split(5 * GIB, 30, holders(a=4, d=4), rtt)
    assert "80 ms" in plan.reason and "too far" in plan.reason
    assert "no node has the model" in plan_split(GIB, 30, [], rtt).reason


def test_layers_follow_memory() -> None:
    plan = plan_split(7 * GIB, 30, holders(a=4, b=2, c=2), rtt)
    assert plan.layers == {"a": 15, "b": 8, "c": 7} or plan.layers == {"a": 15, "b": 7, "c": 8}


@given(st.lists(st.integers(1, 1000), min_size=1, max_size=8), st.integers(8, 200))
def test_proportional_layers_cover_every_layer_and_no_node_is_empty(memories, layer_count) -> None:
    layers = proportional_layers(memories, layer_count)
    assert sum(layers) == layer_count and min(layers) >= 1
    for i, j in ((i, j) for i in range(len(memories)) for j in range(len(memories))):
        if memories[i] > memories[j]:
            assert layers[i] >= layers[j]

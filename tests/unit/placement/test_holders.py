"""holders.elect(): the one node that plans for a model (a split's host, an expert split's planner)."""

import pytest

from services.placement.holders import Holder, elect


@pytest.mark.parametrize(
    ("holders", "elected"),
    [
        ([], None),  # nobody holds the file: nobody plans
        ([("a", 4)], "a"),
        ([("a", 4), ("b", 8)], "b"),  # the most memory plans
        ([("b", 8), ("a", 8)], "a"),  # a tie: the lowest node id, whatever the order
        ([("c", 8), ("b", 2), ("a", 8)], "a"),
        ([("b", 0), ("a", 0)], "a"),  # no memory offered still elects one
    ],
)
def test_the_holder_with_the_most_memory_plans_ties_by_node_id(holders, elected) -> None:
    winner = elect([Holder(node_id, memory) for node_id, memory in holders])
    assert (winner.node_id if winner else None) == elected


def test_every_node_elects_the_same_holder_from_the_same_records() -> None:
    holders = [Holder("a", 8), Holder("b", 8), Holder("c", 4)]
    assert {elect(order) for order in (holders, holders[::-1], holders[1:] + holders[:1])} == {Holder("a", 8)}

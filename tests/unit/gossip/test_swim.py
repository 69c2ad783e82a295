"""Membership merge rules: order of delivery never matters (property tests), and SWIM transitions."""

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from services.common.records import NodeRecord
from services.gossip import swim
from services.gossip.swim import Member

node_ids = st.sampled_from(["n1", "n2", "n3"])
members = st.builds(
    lambda node_id, version, role, address, status, incarnation: Member(
        NodeRecord(node_id=node_id, name=node_id, role=role, version=version), address, status, incarnation
    ),
    node_ids,
    st.integers(0, 3),
    st.sampled_from(["serving", "standby"]),
    st.sampled_from(["a:1", "b:2"]),
    st.sampled_from([swim.ALIVE, swim.SUSPECT, swim.DEAD, swim.LEFT]),
    st.integers(0, 3),
)
states = st.lists(members, max_size=6)


def gossiped(view: dict[str, Member]) -> dict[str, tuple]:
    """What a merge must agree on: everything but local bookkeeping (status_since)."""
    return {node_id: (m.record, m.address, m.status, m.incarnation) for node_id, m in view.items()}


def merged(*deliveries: list[Member]) -> dict[str, Member]:
    view: dict[str, Member] = {}
    for delivery in deliveries:
        view = swim.merge(view, delivery, self_id="me", now=0.0)
    return view


@given(states, states)
def test_merge_is_commutative(a, b) -> None:
    assert gossiped(merged(a, b)) == gossiped(merged(b, a))


@given(states, states, states)
def test_merge_is_associative(a, b, c) -> None:
    assert gossiped(merged(a, b + c)) == gossiped(merged(a + b, c)) == gossiped(merged(a, b, c))


@given(states)
def test_merge_is_idempotent(a) -> None:
    assert gossiped(merged(a, a)) == gossiped(merged(a))


def member(status: str = swim.ALIVE, incarnation: int = 1, version: int = 1) -> Member:
    return Member(NodeRecord(node_id="n1", name="n1", version=version), "a:1", status, incarnation)


def test_newer_record_and_stronger_liveness_are_merged_separately() -> None:
    result = swim.merge_member(member(swim.SUSPECT, 2, version=1), member(swim.ALIVE, 1, version=5), now=0.0)
    assert (result.record.version, result.status, result.incarnation) == (5, swim.SUSPECT, 2)


def test_a_restarted_node_outranks_its_tombstone() -> None:
    assert swim.merge_member(member(swim.DEAD, 10), member(swim.ALIVE, 11), now=0.0).status == swim.ALIVE
    assert swim.merge_member(member(swim.DEAD, 10), member(swim.ALIVE, 10), now=0.0).status == swim.DEAD


def test_suspicion_of_self_is_refuted_with_a_higher_incarnation() -> None:
    claims = [replace(member(swim.SUSPECT, 7), record=NodeRecord(node_id="me", name="me"))]
    assert swim.refute(3, claims, "me") == 8
    assert swim.refute(9, claims, "me") == 9


def test_unrefuted_suspects_die_after_the_timeout_and_tombstones_are_forgotten() -> None:
    view = {"n1": replace(member(swim.SUSPECT), status_since=10.0)}
    assert swim.expire(view, now=10.5, suspicion_timeout=1.0)["n1"].status == swim.SUSPECT
    dead = swim.expire(view, now=11.0, suspicion_timeout=1.0)
    assert dead["n1"].status == swim.DEAD and swim.live(dead) == []
    assert swim.forget(dead, now=11.5, after=5.0) == dead
    assert swim.forget(dead, now=17.0, after=5.0) == {}


def test_entries_about_self_are_not_stored() -> None:
    assert swim.merge({}, [replace(member(), record=NodeRecord(node_id="me", name="me"))], "me", 0.0) == {}

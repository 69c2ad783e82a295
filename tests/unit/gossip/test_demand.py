import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.mesh_identity import MeshIdentity
from services.common.records import NodeRecord
from services.gossip.demand import HOUR, DemandEntry, OwnCounter, expire, merge, summarize
from services.gossip.membership import GossipState, Membership

entries = st.builds(
    DemandEntry, st.sampled_from(["X", "Y"]), st.sampled_from(["a", "b", "c"]), st.integers(0, 50), st.integers(0, 50), st.floats(0, 100), st.floats(0, 100)
)


@given(st.lists(entries), st.lists(entries), st.lists(entries))
def test_merge_is_commutative_associative_idempotent(a, b, c) -> None:
    assert merge(merge({}, a), b) == merge(merge({}, b), a)
    assert merge(merge(merge({}, a), b), c) == merge(merge({}, a), [*b, *c])
    once = merge({}, a)
    assert merge(once, a) == once


def test_newest_entry_of_an_origin_wins_and_origins_add_up() -> None:
    old, new = DemandEntry("X", "a", 5, 5, 10.0, 10.0), DemandEntry("X", "a", 7, 7, 20.0, 20.0)
    other = DemandEntry("X", "b", 3, 3, 15.0, 15.0)
    merged = merge(merge({}, [new, other]), [old])
    (x,) = summarize(merged.values(), [], now=30.0)
    assert (x.requests, x.recent, x.last_seen, x.pinned) == (10, 10, 20.0, False)


def test_entries_past_the_ttl_are_forgotten_but_pinned_models_stay() -> None:
    merged = merge({}, [DemandEntry("X", "a", 1, 1, 100.0, 100.0), DemandEntry("Y", "a", 1, 1, 10.0, 10.0)])
    kept = expire(merged, now=120.0, ttl=50.0)
    assert [key[0] for key in kept] == ["X"]
    assert [(d.model_id, d.pinned) for d in summarize(kept.values(), ["Z"], now=120.0)] == [("X", False), ("Z", True)]


def test_hour_counts_of_stale_entries_do_not_count_as_recent() -> None:
    (x,) = summarize([DemandEntry("X", "a", 9, 9, 0.0, 0.0)], [], now=HOUR + 1)
    assert (x.requests, x.recent) == (9, 0)


def test_own_counter_counts_per_hour_forgets_after_ttl_and_refuses_junk() -> None:
    counter = OwnCounter("a")
    assert counter.count("X", 3, now=0.0)
    assert counter.count("X", 2, now=HOUR - 1)
    assert not counter.count("x" * 500, 1, now=0.0)
    (entry,) = counter.entries(now=HOUR + 10)
    assert (entry.requests, entry.recent, entry.origin) == (5, 2, "a")
    counter.forget(now=HOUR + 10, ttl=5.0)
    assert counter.entries(now=HOUR + 10) == []


OLD_LIFE = DemandEntry("X", "a", requests=40, recent=7, last_seen=900.0, updated_at=950.0)  # written before gossip restarted at 1000


@pytest.mark.parametrize(
    ("echo", "taken"),
    [
        (OLD_LIFE, True),  # our previous life's entry, as a peer kept it
        (DemandEntry("X", "b", 40, 7, 900.0, 950.0), False),  # another origin's: merged as theirs, not counted as ours
        (DemandEntry("X", "a", 1, 1, 1001.0, 1002.0), False),  # an echo of this life's own entry
        (DemandEntry("x" * 500, "a", 1, 1, 900.0, 950.0), False),  # a name we refuse anyway
    ],
)
def test_a_restarted_counter_takes_back_only_its_previous_lifes_entries(echo: DemandEntry, taken: bool) -> None:
    assert OwnCounter("a", started=1000.0).take_back(echo) is taken


def test_a_restarted_counter_adds_its_previous_lifes_counts_once() -> None:
    counter = OwnCounter("a", started=1000.0)
    counter.count("X", 2, now=1010.0)
    assert counter.take_back(OLD_LIFE)
    assert not counter.take_back(OLD_LIFE), "the same echo from another peer adds nothing"
    assert counter.take_back(DemandEntry("X", "a", 30, 9, 800.0, 940.0)) is False, "an older entry of that life loses"
    (entry,) = counter.entries(now=1020.0)
    assert (entry.requests, entry.recent, entry.last_seen, entry.updated_at) == (42, 9, 1010.0, 1020.0)
    (later,) = counter.entries(now=950.0 + HOUR)
    assert (later.requests, later.recent) == (42, 2), "the previous life's hour count ends an hour after it was written"
    counter.forget(now=1010.0 + 5.0, ttl=100.0)
    assert [e.requests for e in counter.entries(now=1015.0)] == [42]
    counter.forget(now=1200.0, ttl=100.0)
    assert counter.entries(now=1200.0) == [], "both lives' counts are forgotten after the TTL"


def test_a_restarted_gossip_gets_its_counts_back_from_a_peers_echo(tmp_path) -> None:
    async def scenario() -> tuple[int, ...]:
        mesh = MeshIdentity("m", b"\1" * 32)
        membership = Membership(NodeRecord("a", "a"), "10.0.0.1:7000", mesh, tmp_path)
        before_restart = DemandEntry("X", "a", 40, 7, time.time() - 60, membership.counter.started - 1)
        await membership.absorb(GossipState("b", (), mesh, (before_restart,)), time.monotonic())
        await membership.count_demand({"X": 2})
        return tuple(d.requests for d in membership.demand_map())

    assert asyncio.run(scenario()) == (42,)

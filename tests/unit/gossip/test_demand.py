from hypothesis import given
from hypothesis import strategies as st

from services.gossip.demand import HOUR, DemandEntry, OwnCounter, expire, merge, summarize

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

"""The blackboard's rules, its board and store, and one anti-entropy exchange between two boards:
merges in any order agree, expiry, size, rate and scrubbing are enforced where a post is made and
again on receipt, search ranks by hits then recency."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.gossip.blackboard import posts as rules
from services.gossip.blackboard.board import Author, Board, BoardOff, BoardRefused
from services.gossip.blackboard.posts import Limits, Post, Refusal, new_post
from services.gossip.blackboard.store import Store
from services.gossip.blackboard.sync import BoardSync, post_from_proto, post_to_proto
from services.gossip.metrics import GossipMetrics
from services.proto.mesh.v1 import peer_pb2

NOW = 1_700_000_000.0
SMALL = Limits(max_posts=5, rate=3, rate_window=60.0, max_bytes=64)


def post(text: str = "STATUS: fine", at: float = NOW, author: str = "a1", name: str = "alpha", tags: tuple[str, ...] = ()) -> Post:
    return new_post(author, name, at, text, tags)


@pytest.mark.parametrize(
    ("made", "now", "reason"),
    [
        (post(), NOW, None),
        (post(tags=("status", "qwen3")), NOW, None),
        (post(at=NOW - 48 * 3600), NOW, Refusal.EXPIRED),
        (post(at=NOW - 48 * 3600 + 1), NOW, None),
        (post(at=NOW + 301), NOW, Refusal.FUTURE),
        (post("x" * 4097), NOW, Refusal.TOO_LARGE),
        (post("é" * 2048), NOW, None),  # 4096 bytes exactly
        (post("   "), NOW, Refusal.MALFORMED),
        (post(author=""), NOW, Refusal.MALFORMED),
        (post(name="a\x1b[2J"), NOW, Refusal.MALFORMED),
        (post(tags=("two words",)), NOW, Refusal.MALFORMED),
        (post(tags=tuple(f"t{i}" for i in range(9))), NOW, Refusal.MALFORMED),
        (Post("0" * 32, "a1", "alpha", NOW, "STATUS: fine"), NOW, Refusal.MALFORMED),  # an id that is not its content's
        (post("mail me at bob@example.com"), NOW, Refusal.FLAGGED),
        (post("see /home/bob/x"), NOW, Refusal.FLAGGED),  # the poster's node rewrites home paths: raw ones mean a bad sender
        (post(tags=("10.1.2.3",)), NOW, Refusal.FLAGGED),
    ],
)
def test_what_a_receiver_refuses(made: Post, now: float, reason: Refusal | None) -> None:
    assert rules.refusal(made, now) == reason


def test_the_rate_is_per_author_and_per_window() -> None:
    held = [post(f"n{i}", at=NOW + i) for i in range(3)]
    assert rules.over_rate(post("next", at=NOW + 10), held, SMALL)
    assert not rules.over_rate(post("next", at=NOW + 10, author="b2"), held, SMALL)
    assert not rules.over_rate(post("later", at=NOW + 60.5), held, SMALL)  # the first left the window
    assert not rules.over_rate(held[0], held, SMALL)  # a post does not count against itself


def test_retain_keeps_the_newest_unexpired() -> None:
    many = {p.post_id: p for p in (post(f"n{i}", at=NOW - 100 + i) for i in range(8))}
    kept = rules.retain(many, NOW, SMALL)
    assert sorted(p.text for p in kept.values()) == ["n3", "n4", "n5", "n6", "n7"]
    assert rules.floor(kept, SMALL) == min(p.key for p in kept.values())
    assert rules.retain(many, NOW + 48 * 3600, SMALL) == {}


@given(st.permutations(range(7)), st.integers(1, 6))
def test_merge_in_any_order_and_batching_agrees(order: list[int], batch: int) -> None:
    everything = [post(f"n{i}", at=NOW - i * 10) for i in range(7)]
    expected = rules.retain({p.post_id: p for p in everything}, NOW, SMALL)
    merged: dict[str, Post] = {}
    shuffled = [everything[i] for i in order]
    for start in range(0, len(shuffled), batch):
        merged = rules.retain({**merged, **{p.post_id: p for p in shuffled[start : start + batch]}}, NOW, SMALL)
        merged = rules.retain({**merged, **{p.post_id: p for p in shuffled[:start]}}, NOW, SMALL)  # duplicates change nothing
    assert merged == expected


def test_search_ranks_by_hits_then_recency() -> None:
    old_two = post("qwen split qwen", at=NOW - 30)
    new_one = post("qwen is up", at=NOW - 10)
    old_one = post("QWEN down", at=NOW - 20)
    by_author = post("nothing here", at=NOW - 5, name="qwen-box")
    unrelated = post("smollm only", at=NOW)
    found = rules.search([old_one, unrelated, new_one, by_author, old_two], ["Qwen"])
    assert found == [old_two, by_author, new_one, old_one]
    assert rules.search([old_two, new_one], ["split", "up"]) == [new_one, old_two]  # a hit each: the newer first
    assert rules.search([old_two, new_one, old_one], ["qwen"], limit=1) == [old_two]
    assert rules.search([old_two], ["  "]) == []


def test_feed_since_author_limit_newest_first() -> None:
    mine = [post(f"a{i}", at=NOW + i) for i in range(3)]
    theirs = [post(f"b{i}", at=NOW + 10 + i, author="b2", name="beta") for i in range(2)]
    everything = [*mine, *theirs]
    assert [p.text for p in rules.feed(everything)] == ["b1", "b0", "a2", "a1", "a0"]
    assert [p.text for p in rules.feed(everything, since=NOW + 1)] == ["b1", "b0", "a2"]
    assert [p.text for p in rules.feed(everything, author="beta")] == ["b1", "b0"]
    assert [p.text for p in rules.feed(everything, author="a1")] == ["a2", "a1", "a0"]
    assert [p.text for p in rules.feed(everything, limit=2)] == ["b1", "b0"]


@pytest.mark.parametrize(("publish", "forced", "on"), [(False, False, True), (True, False, False), (True, True, True), (False, True, True)])
def test_on_in_private_meshes_off_in_public_ones_unless_asked(publish: bool, forced: bool, on: bool) -> None:
    assert rules.board_on(publish, forced) == on


def board(home: Path, name: str = "alpha", limits: Limits = SMALL, on: bool = True) -> Board:
    return Board(Store(home), Author(f"{name}-id", name), lambda: on, GossipMetrics(), limits)


def dropped(b: Board, reason: Refusal) -> float:
    assert b.metrics is not None
    return b.metrics.board_dropped.labels(reason)._value.get()


def test_a_local_post_is_scrubbed_bounded_and_rate_limited(tmp_path: Path) -> None:
    b = board(tmp_path)
    made = b.post("built in /home/alice/mesh", ("status",), NOW)
    assert made.text == "built in ~/mesh" and made.author_name == "alpha" and rules.refusal(made, NOW) is None
    with pytest.raises(BoardRefused, match="an email address") as refused:
        b.post("ask carol@example.com", (), NOW)
    assert refused.value.reason == Refusal.FLAGGED
    with pytest.raises(BoardRefused, match="at most 64 bytes"):
        b.post("x" * 65, (), NOW)
    with pytest.raises(BoardRefused, match="empty"):
        b.post("  ", (), NOW)
    b.post("two", (), NOW + 1)
    b.post("three", (), NOW + 2)
    with pytest.raises(BoardRefused, match="at most 3 times in 60 s") as limited:
        b.post("four", (), NOW + 3)
    assert limited.value.reason == Refusal.RATE
    b.post("four", (), NOW + 61)
    assert [p.text for p in b.feed(0, "", 0)] == ["four", "three", "two", "built in ~/mesh"]


def test_received_posts_are_checked_again_and_drops_counted(tmp_path: Path) -> None:
    b = board(tmp_path)
    good = post("fine", at=NOW)
    flagged = post("token AKIAIOSFODNN7EXAMPLE", at=NOW)
    burst = [post(f"burst {i}", at=NOW + i, author="loud") for i in range(5)]
    assert b.absorb([good, good, flagged, *burst], NOW + 10) == 4  # good once, three of the burst
    assert dropped(b, Refusal.FLAGGED) == 1 and dropped(b, Refusal.RATE) == 2
    assert flagged.post_id not in b.posts


def test_the_store_survives_a_reopen_and_trims_on_disk(tmp_path: Path) -> None:
    b = board(tmp_path)
    b.absorb([post(f"n{i}", at=NOW + i, author=f"x{i}") for i in range(7)], NOW + 10)
    b.store.close()
    again = board(tmp_path)
    assert sorted(p.text for p in again.posts.values()) == ["n2", "n3", "n4", "n5", "n6"]
    again.expire(NOW + 48 * 3600 + 2.5)
    again.store.close()
    assert sorted(p.text for p in board(tmp_path).posts.values()) == ["n3", "n4", "n5", "n6"]


def test_an_off_board_refuses_reads_and_ignores_peers(tmp_path: Path) -> None:
    b = board(tmp_path, on=False)
    with pytest.raises(BoardOff, match="--blackboard"):
        b.post("hi", (), NOW)
    with pytest.raises(BoardOff):
        b.feed(0, "", 0)
    assert b.absorb([post()], NOW) == 0 and b.posts == {}


def test_proto_round_trip() -> None:
    made = post(tags=("a", "b"))
    assert post_from_proto(post_to_proto(made)) == made


def test_one_exchange_brings_both_boards_to_the_union(tmp_path: Path) -> None:
    """A digest, the answer, the push: as sync.round does over the gateway, here in process."""
    ours, theirs = board(tmp_path / "a", "alpha", Limits()), board(tmp_path / "b", "beta", Limits())
    now = time.time()  # a round dates what it receives by the clock
    for i in range(3):
        ours.post(f"ours {i}", (), now - i)
        theirs.post(f"theirs {i}", (), now - i)
    ids = itertools.count()

    class Peers:
        def live_peers(self) -> list:
            return []

    async def send(address: str, message: peer_pb2.GossipMessage, timeout: float) -> peer_pb2.GossipMessage:
        next(ids)
        return remote.handle(message)

    remote = BoardSync(theirs, Peers(), send, 1.0, 1.0)  # type: ignore[arg-type]
    local = BoardSync(ours, Peers(), send, 1.0, 1.0)  # type: ignore[arg-type]
    asyncio.run(local.round("beta:1"))
    assert set(ours.posts) == set(theirs.posts) and len(ours.posts) == 6
    assert next(ids) == 2  # digest, then the push of what they lacked
    asyncio.run(local.round("beta:1"))
    assert next(ids) == 4  # in agreement: a digest and an empty answer, no push


def test_a_full_board_is_sent_only_what_it_would_keep(tmp_path: Path) -> None:
    ours = board(tmp_path / "a", limits=Limits(max_posts=3, rate=100))
    ours.absorb([post(f"n{i}", at=NOW + i, author="x") for i in range(6)], NOW + 10)  # ours keeps n3..n5
    full_floor = ours.floor()
    older, newer = post("older", at=NOW + 2.5, author="y"), post("newer", at=NOW + 9, author="y")
    theirs = board(tmp_path / "b", limits=Limits(max_posts=10, rate=100))
    theirs.absorb([older, newer], NOW + 10)
    assert theirs.missing_from(list(ours.posts), full_floor, 10_000) == [newer]
    assert theirs.missing_from([], None, 10_000) == [newer, older]
    assert theirs.missing_from([], None, 300) == [newer]  # what fits the answer's bytes; the rest next round

"""Public listings (discovery/listing.py): what a publisher writes reads back whole, and every kind
of bad listing a relay may hand over is refused for its own reason and counted, without stopping
the good ones beside it; per mesh the newest listing wins, whatever order the relay answered in."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.gateway.discovery.listing import (
    FUTURE_SLACK_S,
    KIND,
    MAX_CONTENT_BYTES,
    MAX_ENTRIES,
    MAX_LIFETIME_S,
    MAX_STRING,
    MAX_TOKEN_CHARS,
    Listing,
    ListingEvent,
    Reading,
    Rejection,
    content_of,
    fit,
    newest,
    read,
    read_all,
    tags_of,
)

NOW = 1_800_000_000
PUBLISHER = "ab" * 32
OTHER_PUBLISHER = "cd" * 32

LISTING = Listing(
    mesh_id="7f3a9c01d2e4b5a6",
    name="garage",
    region="eu-west",
    served=("Qwen3-8B-Q4_K_M", "Qwen2.5-3B-Instruct-Q4_K_M"),
    wanted=("GLM-4.7-Flash-Q4_K_M",),
    memory_bytes=48 * 2**30,
    node_count=3,
    client_count=2,
    max_clients=10,
    version="0.1.0",
    join_token="pub1-token",
    community=True,
    publisher=PUBLISHER,
    created_at=NOW - 10,
    expires_at=NOW + 110,
)


def event_of(listing: Listing = LISTING, **changes: Any) -> ListingEvent:
    """The event a publisher would sign for `listing`, with the fields in `changes` tampered."""
    event = ListingEvent(listing.publisher, KIND, listing.created_at, tags_of(listing), content_of(listing), signature_ok=True)
    return replace(event, **changes)


def content_with(**fields: Any) -> str:
    """LISTING's content with some fields replaced; a field given as `...` is left out."""
    body = json.loads(content_of(LISTING))
    body.update(fields)
    return json.dumps({key: value for key, value in body.items() if value is not ...})


def tags_with(**tags: list[str] | None) -> list[list[str]]:
    """LISTING's tags with the named ones replaced (their values) or dropped (None)."""
    kept = [tag for tag in tags_of(LISTING) if tag[0] not in tags]
    return kept + [[name, *values] for name, values in tags.items() if values is not None]


def test_a_published_listing_reads_back_whole() -> None:
    assert read(event_of(), NOW) == LISTING


def test_the_tags_address_the_mesh_expire_and_mark_the_app() -> None:
    assert tags_of(LISTING) == [["d", LISTING.mesh_id], ["expiration", str(NOW + 110)], ["k", "mesh-llm"], ["t", "mesh-llm"]]


def test_the_content_holds_no_envelope_field_and_is_compact() -> None:
    content = content_of(LISTING)
    assert " " not in content.replace("Q4_K_M", "")
    assert PUBLISHER not in content and str(LISTING.created_at) not in content and str(LISTING.expires_at) not in content


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(event_of(content=content_with(name="", region="")), replace(LISTING, name="", region=""), id="unnamed, no region"),
        pytest.param(event_of(content=content_with(served=["a", "b", "a"])), replace(LISTING, served=("a", "b")), id="duplicates counted once"),
        pytest.param(event_of(content=content_with(later_field=[1, 2])), LISTING, id="unknown field ignored"),
        pytest.param(event_of(content=content_with(max_clients=0, clients=500)), replace(LISTING, max_clients=0, client_count=500), id="no client limit"),
        pytest.param(event_of(content=content_with(join="j" * MAX_TOKEN_CHARS)), replace(LISTING, join_token="j" * MAX_TOKEN_CHARS), id="long join token"),
        pytest.param(event_of(content=content_with(name="n" * MAX_STRING)), replace(LISTING, name="n" * MAX_STRING), id="name at its bound"),
        pytest.param(event_of(tags=[["t", "mesh-llm"], *tags_of(LISTING), ["d", "later-d-ignored"]]), LISTING, id="first d tag wins"),
    ],
)
def test_acceptable_listings(event: ListingEvent, expected: Listing) -> None:
    assert read(event, NOW) == expected


def test_a_listing_dated_ahead_within_the_forgiven_skew_is_accepted() -> None:
    ahead = replace(LISTING, created_at=NOW + FUTURE_SLACK_S, expires_at=NOW + FUTURE_SLACK_S + 120)
    assert read(event_of(ahead), NOW) == ahead


REFUSALS = [
    pytest.param(event_of(signature_ok=False), Rejection.UNSIGNED, id="bad signature"),
    pytest.param(event_of(kind=1), Rejection.MISMATCHED, id="another kind"),
    pytest.param(event_of(tags=tags_with(k=None)), Rejection.MISMATCHED, id="no mesh-llm marker"),
    pytest.param(event_of(tags=tags_with(k=["another-app"])), Rejection.MISMATCHED, id="another app's marker"),
    pytest.param(event_of(tags=tags_with(d=["another-mesh"])), Rejection.MISMATCHED, id="d tag names another mesh"),
    pytest.param(event_of(content=content_with(padding="x" * MAX_CONTENT_BYTES)), Rejection.OVERSIZED, id="content too large"),
    pytest.param(event_of(content=json.dumps({"n": "é" * 2100}, ensure_ascii=False)), Rejection.OVERSIZED, id="content bytes, not characters"),
    pytest.param(event_of(content=content_with(served=[f"m{i}" for i in range(MAX_ENTRIES + 1)])), Rejection.OVERSIZED, id="too many models"),
    pytest.param(event_of(content=content_with(wanted=["w" * (MAX_STRING + 1)])), Rejection.OVERSIZED, id="model name too long"),
    pytest.param(event_of(content=content_with(name="n" * (MAX_STRING + 1))), Rejection.OVERSIZED, id="name too long"),
    pytest.param(event_of(content=content_with(join="j" * (MAX_TOKEN_CHARS + 1))), Rejection.OVERSIZED, id="join token too long"),
    pytest.param(event_of(tags=tags_of(LISTING) + [["t", f"x{i}"] for i in range(MAX_ENTRIES)]), Rejection.OVERSIZED, id="too many tags"),
    pytest.param(event_of(tags=tags_with(t=["t" * (MAX_STRING + 1)])), Rejection.OVERSIZED, id="tag value too long"),
    pytest.param(event_of(content="{"), Rejection.MALFORMED, id="not JSON"),
    pytest.param(event_of(content="[]"), Rejection.MALFORMED, id="not an object"),
    pytest.param(event_of(content="[" * 2000 + "]" * 2000), Rejection.MALFORMED, id="nested past the parser's recursion"),
    pytest.param(event_of(content=content_with(version=...)), Rejection.MALFORMED, id="field missing"),
    pytest.param(event_of(content=content_with(nodes="3")), Rejection.MALFORMED, id="count as text"),
    pytest.param(event_of(content=content_with(nodes=True)), Rejection.MALFORMED, id="count as bool"),
    pytest.param(event_of(content=content_with(nodes=-1)), Rejection.MALFORMED, id="negative count"),
    pytest.param(event_of(content=content_with(memory_bytes=2.5e10)), Rejection.MALFORMED, id="memory as float"),
    pytest.param(event_of(content=content_with(community="yes")), Rejection.MALFORMED, id="flag as text"),
    pytest.param(event_of(content=content_with(served="Qwen3-8B")), Rejection.MALFORMED, id="model list as text"),
    pytest.param(event_of(content=content_with(served=[7])), Rejection.MALFORMED, id="model as number"),
    pytest.param(event_of(content=content_with(wanted=[""])), Rejection.MALFORMED, id="empty model name"),
    pytest.param(event_of(content=content_with(name="\x1b[2Jgarage")), Rejection.MALFORMED, id="terminal escape in name"),
    pytest.param(event_of(content=content_with(mesh_id="")), Rejection.MALFORMED, id="empty mesh id"),
    pytest.param(event_of(pubkey="ab" * 31), Rejection.MALFORMED, id="short pubkey"),
    pytest.param(event_of(pubkey="AB" * 32), Rejection.MALFORMED, id="pubkey not lowercase hex"),
    pytest.param(event_of(tags=tags_with(d=None)), Rejection.MALFORMED, id="no d tag"),
    pytest.param(event_of(tags=[[], *tags_of(LISTING)]), Rejection.MALFORMED, id="empty tag"),
    pytest.param(event_of(tags=tags_with(expiration=None)), Rejection.MALFORMED, id="never expires"),
    pytest.param(event_of(tags=tags_with(expiration=["soon"])), Rejection.MALFORMED, id="expiration not a number"),
    pytest.param(event_of(tags=tags_with(expiration=[str(NOW - 10)])), Rejection.MALFORMED, id="expires when created"),
    pytest.param(event_of(tags=tags_with(expiration=[str(NOW - 10 + MAX_LIFETIME_S + 1)])), Rejection.MALFORMED, id="lives past the longest lifetime"),
    pytest.param(event_of(replace(LISTING, created_at=NOW - 120, expires_at=NOW)), Rejection.EXPIRED, id="expires now"),
    pytest.param(event_of(replace(LISTING, created_at=NOW - 200, expires_at=NOW - 80)), Rejection.EXPIRED, id="expired"),
    pytest.param(event_of(replace(LISTING, created_at=NOW + FUTURE_SLACK_S + 1, expires_at=NOW + 400)), Rejection.FUTURE, id="dated ahead"),
    pytest.param(event_of(replace(LISTING, client_count=10, max_clients=10)), Rejection.FULL, id="full"),
    pytest.param(event_of(replace(LISTING, client_count=12, max_clients=10)), Rejection.FULL, id="over full"),
]


@pytest.mark.parametrize(("event", "reason"), REFUSALS)
def test_bad_listings_are_refused_for_their_reason(event: ListingEvent, reason: Rejection) -> None:
    assert read(event, NOW) is reason


def test_every_rejection_reason_has_a_case() -> None:
    """The table above covers the whole enum: a reason added later needs a case."""
    assert {case.values[1] for case in REFUSALS} == set(Rejection)


def test_one_bad_listing_does_not_poison_the_others() -> None:
    """The seed's issue #268: every refusal is counted and the good listings still come through."""
    other = replace(LISTING, mesh_id="0123456789abcdef", publisher=OTHER_PUBLISHER)
    events = [
        event_of(content="{"),
        event_of(),
        event_of(signature_ok=False),
        event_of(replace(LISTING, created_at=NOW - 200, expires_at=NOW - 80)),
        event_of(content=content_with(served=7)),
        event_of(other),
    ]
    assert read_all(events, NOW) == Reading((other, LISTING), Counter({Rejection.MALFORMED: 2, Rejection.UNSIGNED: 1, Rejection.EXPIRED: 1}))


def test_a_member_takes_over_publishing_with_its_own_key() -> None:
    """The first publisher stopped: its last listing is older than the member's, then expires."""
    stopped = replace(LISTING, created_at=NOW - 100, expires_at=NOW + 20)
    member = replace(LISTING, publisher=OTHER_PUBLISHER, node_count=2, created_at=NOW - 5, expires_at=NOW + 115)
    assert read_all([event_of(stopped), event_of(member)], NOW).listings == (member,)
    assert read_all([event_of(stopped), event_of(member)], NOW + 60).listings == (member,)


def test_a_superseded_copy_is_not_a_rejection() -> None:
    """Relays that keep old copies of a replaceable event (nostr-relay does) cost nothing."""
    older = replace(LISTING, created_at=NOW - 70, expires_at=NOW + 50, node_count=1)
    assert read_all([event_of(older), event_of()], NOW) == Reading((LISTING,), Counter())


def test_a_mesh_whose_newest_listing_is_full_is_delisted() -> None:
    """An older copy from before it filled (another member's, unexpired) does not bring it back."""
    before = replace(LISTING, publisher=OTHER_PUBLISHER, created_at=NOW - 50, client_count=3)
    filled = replace(LISTING, client_count=10)
    assert read_all([event_of(before), event_of(filled)], NOW) == Reading((), Counter({Rejection.FULL: 1}))


def test_fit_trims_wanted_models_before_served_ones() -> None:
    many = tuple(f"Some-Org/Some-Rather-Long-Model-Name-{i:02d}-Q4_K_M" for i in range(MAX_ENTRIES + 10))
    fitted = fit(replace(LISTING, served=many[:40], wanted=many))
    assert len(content_of(fitted).encode()) <= MAX_CONTENT_BYTES
    assert fitted.served == many[:40] and fitted.wanted == many[: len(fitted.wanted)] and len(fitted.wanted) < 40
    assert read(event_of(fitted), NOW) == fitted


def test_fit_drops_model_names_readers_would_refuse_or_count_once() -> None:
    fitted = fit(replace(LISTING, served=("ok", "x" * (MAX_STRING + 1), "bell\a", "ok"), wanted=()))
    assert fitted.served == ("ok",)


def test_fit_leaves_a_listing_that_fits_alone() -> None:
    assert fit(LISTING) == LISTING


def test_fit_refuses_what_no_trimming_can_save() -> None:
    with pytest.raises(ValueError, match="oversized"):
        fit(replace(LISTING, name="n" * (MAX_STRING + 1)))


LISTINGS = st.builds(
    Listing,
    mesh_id=st.sampled_from(["mesh-a", "mesh-b", "mesh-c"]),
    name=st.just("m"),
    region=st.just(""),
    served=st.lists(st.sampled_from(["x", "y"]), max_size=2, unique=True).map(tuple),
    wanted=st.just(()),
    memory_bytes=st.just(0),
    node_count=st.integers(1, 3),
    client_count=st.integers(0, 2),
    max_clients=st.just(0),
    version=st.just("0.1.0"),
    join_token=st.just("t"),
    community=st.booleans(),
    publisher=st.sampled_from([PUBLISHER, OTHER_PUBLISHER]),
    created_at=st.integers(NOW - 3, NOW),
    expires_at=st.integers(NOW + 1, NOW + 3),
)


@given(st.lists(LISTINGS, max_size=12), st.randoms(use_true_random=False))
def test_newest_does_not_depend_on_the_order_relays_answer_in(listings: list[Listing], random: Any) -> None:
    shuffled = list(listings)
    random.shuffle(shuffled)
    assert newest(shuffled) == newest(listings)


@given(st.lists(LISTINGS, max_size=12))
def test_newest_keeps_one_listing_per_mesh_and_none_older(listings: list[Listing]) -> None:
    chosen = newest(listings)
    assert [listing.mesh_id for listing in chosen] == sorted({listing.mesh_id for listing in listings})
    for listing in chosen:
        assert listing in listings
        assert all(other.created_at <= listing.created_at for other in listings if other.mesh_id == listing.mesh_id)

"""What discovery reads from strangers: public listings as relays hand them over (listing.py,
nostr.py) and LAN announcements (announcement.py). Any relay message, event JSON, envelope or
content is a listing within every bound or a refusal counted by reason; any TXT record is an
announcement within its bounds or BadAnnouncement; nothing raises, and what a node writes reads back."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from nostr_sdk import Keys

from services.gateway.discovery import announcement as announcements
from services.gateway.discovery import listing as listings
from services.gateway.discovery.announcement import Announcement, BadAnnouncement
from services.gateway.discovery.listing import KIND, MARKER, Listing, ListingEvent, Rejection, content_of, read, tags_of
from services.gateway.discovery.nostr import SUBSCRIPTION, Received, event_of, reading_of, received
from tests.unit.fuzz.inputs import JSON_VALUES, deeply_nested, fuzz, mutated

pytestmark = pytest.mark.timeout(120)

NOW = 1_800_000_000
KEYS = Keys.generate()
LISTING = Listing(
    "7f3a9c01d2e4b5a6", "garage", "eu", ("Qwen3-8B",), ("GLM-4.7-Flash",), 8 * 10**9, 2, 0, 0, "0.1.0", "", False, KEYS.public_key().to_hex(), NOW, NOW + 120
)
EVENT = ListingEvent(LISTING.publisher, KIND, LISTING.created_at, tags_of(LISTING), content_of(LISTING), signature_ok=True)
SIGNED = event_of(LISTING, KEYS).as_json()


def assert_within_bounds(found: Listing) -> None:
    """What --auto and the console rely on in an accepted listing."""
    assert found.mesh_id and found.mesh_id.isprintable() and len(found.mesh_id) <= listings.MAX_STRING
    assert all(isinstance(text, str) and text.isprintable() for text in (found.name, found.region, found.version, found.join_token))
    assert len(found.served) <= listings.MAX_ENTRIES and len(found.wanted) <= listings.MAX_ENTRIES
    assert all(isinstance(model, str) and 0 < len(model) <= listings.MAX_STRING for model in (*found.served, *found.wanted))
    assert 0 <= found.memory_bytes <= listings.MAX_MEMORY_BYTES and isinstance(found.community, bool)
    assert all(isinstance(n, int) and 0 <= n <= listings.MAX_COUNT for n in (found.node_count, found.client_count, found.max_clients))
    assert found.created_at <= NOW + listings.FUTURE_SLACK_S and NOW < found.expires_at <= found.created_at + listings.MAX_LIFETIME_S


def judged(event: ListingEvent) -> None:
    verdict = read(event, NOW)
    if isinstance(verdict, Listing):
        assert_within_bounds(verdict)
    else:
        assert isinstance(verdict, Rejection)


def test_a_written_listing_reads_back() -> None:
    assert read(EVENT, NOW) == LISTING
    assert reading_of([SIGNED], NOW).listings == (LISTING,)


TAGS = st.lists(st.lists(st.sampled_from(["d", "expiration", "k", "t", MARKER, LISTING.mesh_id, str(NOW + 60)]) | st.text(max_size=12), max_size=3), max_size=6)
CONTENTS = st.builds(json.dumps, JSON_VALUES) | st.text(max_size=80) | mutated(EVENT.content.encode()).map(lambda data: data.decode("utf-8", "replace"))
CONTENT_FIELDS = st.sampled_from(sorted(json.loads(EVENT.content)))


@fuzz(200)
@given(
    st.just(EVENT.pubkey) | st.text(max_size=70),
    st.just(KIND) | st.integers(),
    st.just(EVENT.created_at) | st.integers(),
    st.just(EVENT.tags) | TAGS,
    st.just(EVENT.content) | CONTENTS,
)
@example(EVENT.pubkey, KIND, EVENT.created_at, EVENT.tags, deeply_nested(2000).decode())
def test_any_event_is_a_listing_within_bounds_or_a_rejection(pubkey: str, kind: int, created_at: int, tags: list[list[str]], content: str) -> None:
    judged(ListingEvent(pubkey, kind, created_at, tags, content, signature_ok=True))


@fuzz(200)
@given(CONTENT_FIELDS, JSON_VALUES)
def test_a_content_field_of_any_json_is_accepted_within_bounds_or_refused(key: str, value: object) -> None:
    content = json.loads(EVENT.content)
    content[key] = value
    judged(replace(EVENT, content=json.dumps(content)))


@fuzz(200)
@given(
    st.text(max_size=120)
    | st.builds(json.dumps, JSON_VALUES)
    | st.builds(lambda rest: json.dumps(["EVENT", SUBSCRIPTION, *rest]), st.lists(JSON_VALUES, max_size=2))
)
@example(deeply_nested().decode())
def test_any_relay_message_is_an_event_the_end_or_nothing(message: str) -> None:
    answer = received(message)
    assert isinstance(answer, Received)
    if answer.event is not None:
        json.loads(answer.event)


EVENT_JSON = json.loads(SIGNED)


@fuzz(120)
@given(st.lists(st.builds(json.dumps, JSON_VALUES) | mutated(SIGNED.encode()).map(lambda data: data.decode("utf-8", "replace")), max_size=3))
def test_any_event_json_beside_a_good_one_is_refused_alone(texts: list[str]) -> None:
    assert reading_of([*texts, SIGNED], NOW).listings == (LISTING,)  # the bad ones beside it poison nothing


@fuzz(120)
@given(st.sampled_from(sorted(EVENT_JSON)), JSON_VALUES)
def test_an_event_field_of_any_json_is_read_or_counted(key: str, value: object) -> None:
    reading = reading_of([json.dumps({**EVENT_JSON, key: value})], NOW)
    assert len(reading.listings) + sum(reading.rejected.values()) == 1
    for found in reading.listings:
        assert_within_bounds(found)


# --- LAN announcements ------------------------------------------------------------------------------

ANNOUNCEMENT = Announcement("7f3a9c01d2e4b5a6", "garage", "a1b2c3d4e5f60718", "alpha", ("Qwen3-8B", "SmolLM2"), 2, 7000, 8 * 10**9, "0.1.0")
TXT = {key.encode(): value.encode() for key, value in announcements.properties(ANNOUNCEMENT).items()}


def test_an_announcement_reads_back() -> None:
    assert announcements.parse(TXT) == ANNOUNCEMENT


@fuzz(200)
@given(
    st.dictionaries(
        st.sampled_from(sorted(TXT)) | st.binary(max_size=8), st.none() | st.binary(max_size=40) | st.sampled_from(sorted(TXT.values())), max_size=12
    )
    | st.builds(lambda key, value: {**TXT, key: value}, st.sampled_from(sorted(TXT)), st.none() | st.binary(max_size=40) | mutated(b"12345")),
)
def test_any_txt_record_is_an_announcement_within_bounds_or_refused(txt: dict[bytes, bytes | None]) -> None:
    try:
        found = announcements.parse(txt)
    except BadAnnouncement:
        return
    assert announcements.IDENTIFIER.fullmatch(found.mesh_id) and announcements.IDENTIFIER.fullmatch(found.node_id)
    assert all(text.isprintable() for text in (found.mesh_name, found.node_name, found.version, *found.models))
    assert len(found.models) <= found.models_total <= announcements.MAX_MODELS and 0 < found.port <= 65535
    assert 0 <= found.memory_bytes <= announcements.MAX_MEMORY

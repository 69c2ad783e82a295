"""The Nostr side of public listings (discovery/nostr.py), without a relay: the node's key is made
once and kept private, a listing signed with nostr-sdk reads back whole, and one whose content was
changed after signing is refused as unsigned. A relay's messages are read as NIP-01 says, and every
event it returned is judged and counted: forged, expired and unparseable ones included."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from nostr_sdk import Event, Keys

from services.gateway.discovery.listing import Listing, Rejection, read
from services.gateway.discovery.nostr import KEY_FILE, SUBSCRIPTION, Received, event_of, load_or_create_keys, reading_of, received, untrusted

NOW = 1_800_000_000


def listing_by(pubkey: str) -> Listing:
    return Listing("7f3a9c01d2e4b5a6", "garage", "eu", ("Qwen3-8B",), (), 8 * 10**9, 2, 0, 0, "0.1.0", "", False, pubkey, NOW, NOW + 120)


def test_the_key_is_made_once_and_private(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path / "home")
    assert (tmp_path / "home" / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert load_or_create_keys(tmp_path / "home").public_key().to_hex() == keys.public_key().to_hex()
    assert load_or_create_keys(tmp_path / "other").public_key().to_hex() != keys.public_key().to_hex()


def test_a_signed_listing_reads_back_whole(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path)
    listing = listing_by(keys.public_key().to_hex())
    event = event_of(listing, keys)
    assert event.verify() and event.kind().as_u16() == 31990
    assert read(untrusted(event), NOW) == listing


def test_a_listing_changed_after_signing_is_unsigned(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path)
    signed = json.loads(event_of(listing_by(keys.public_key().to_hex()), keys).as_json())
    signed["content"] = signed["content"].replace("garage", "forged")
    forged = Event.from_json(json.dumps(signed))
    assert read(untrusted(forged), NOW) is Rejection.UNSIGNED


EVENT = {"id": "00" * 32, "kind": 31990}


@pytest.mark.parametrize(
    ("message", "meaning"),
    [
        (json.dumps(["EVENT", SUBSCRIPTION, EVENT]), Received(event=json.dumps(EVENT))),
        (json.dumps(["EVENT", SUBSCRIPTION, "not an event"]), Received(event='"not an event"')),  # passed on: counted malformed
        (json.dumps(["EVENT", "someone-else", EVENT]), Received()),
        (json.dumps(["EOSE", SUBSCRIPTION]), Received(done=True)),
        (json.dumps(["CLOSED", SUBSCRIPTION, "auth-required: no"]), Received(done=True)),
        (json.dumps(["EOSE", "someone-else"]), Received()),
        (json.dumps(["NOTICE", "slow down"]), Received()),
        (json.dumps(["EVENT"]), Received()),
        ("{not json", Received()),
        (b"[" * 100_000, Received()),
    ],
)
def test_a_relay_message_is_an_event_the_end_or_nothing(message: str | bytes, meaning: Received) -> None:
    assert received(message) == meaning


def test_every_event_returned_is_judged_and_counted() -> None:
    keys = Keys.generate()
    listing = listing_by(keys.public_key().to_hex())
    good = event_of(listing, keys).as_json()
    forged = json.loads(good)
    forged["content"] = forged["content"].replace("garage", "forged")
    expired = event_of(replace(listing, created_at=NOW - 300, expires_at=NOW - 180), keys).as_json()
    # Each relay sent the good one: it is read once, not counted twice.
    reading = reading_of([good, json.dumps(forged), expired, '{"kind": 31990}', good], NOW)
    assert reading.listings == (listing,)
    assert reading.rejected == Counter({Rejection.UNSIGNED: 1, Rejection.EXPIRED: 1, Rejection.MALFORMED: 1})

"""The Nostr side of public listings (discovery/nostr.py), without a relay: the node's key is made
once and kept private, a listing signed with nostr-sdk reads back whole, and one whose content was
changed after signing is refused as unsigned."""

from __future__ import annotations

import json
from pathlib import Path

from nostr_sdk import Event

from services.gateway.discovery.listing import Listing, Rejection, read
from services.gateway.discovery.nostr import KEY_FILE, event_of, load_or_create_keys, untrusted

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

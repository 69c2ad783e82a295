"""Public listings on Nostr relays, through nostr-sdk: the node's key, publishing, reading.

Owns <home>/nostr.key (the node's Nostr secret key, private to us, made on first use) and the
nostr-sdk clients. What a listing says and whether a read one is believed is listing.py's: events
are built from content_of/tags_of, and everything read goes through read_all after nostr-sdk
verified its signature. The loop that decides when to publish is publisher.py's.

Relays are other people's servers: one may be down, slow or lying. Publishing succeeds when any
relay took the event; reading keeps what every relay returned and lets listing.py sort it out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

from nostr_sdk import Client, Event, EventBuilder, Filter, Keys, Kind, NostrSdkError, RelayStatus, RelayUrl, ReqTarget, SingleLetterTag, Tag, Timestamp

from services.gateway.discovery.listing import KIND, MARKER, Listing, ListingEvent, Reading, content_of, read_all, tags_of

KEY_FILE = "nostr.key"
RELAY_TIMEOUT = 5.0  # seconds for relays' websockets to open, then again for their OK: a slower relay is skipped this round
# nostr-sdk's exception base: its generated module rebinds the name to a namespace class, which type checkers take for the class.
SdkError = cast("type[Exception]", NostrSdkError)
MAX_EVENTS = 2000  # listings read from the relays at most: a flood beyond is not read


class RelayError(Exception):
    """No relay took the listing; the message says what each one answered."""


def load_or_create_keys(home: Path) -> Keys:
    """The node's Nostr keys from <home>/nostr.key (hex secret key, mode 0600), made on first use."""
    path = home / KEY_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(Keys.generate().secret_key().to_hex())
        os.replace(partial, path)  # whole or absent: a crash mid-write must not leave half a key
    return Keys.parse(path.read_text().strip())


def event_of(listing: Listing, keys: Keys) -> Event:
    """The signed event of a listing (its created_at is the listing's, its tags listing.py's)."""
    builder = EventBuilder(Kind(KIND), content_of(listing)).tags([Tag.parse(tag) for tag in tags_of(listing)])
    unsigned = builder.custom_created_at(Timestamp.from_secs(listing.created_at)).finalize_unsigned(keys.public_key())
    return keys.sign_event(unsigned)


def untrusted(event: Event) -> ListingEvent:
    """A relay's event as listing.py reads it, with nostr-sdk's verdict on its id and signature."""
    return ListingEvent(
        pubkey=event.author().to_hex(),
        kind=event.kind().as_u16(),
        created_at=event.created_at().as_secs(),
        tags=[tag.to_vec() for tag in event.tags()],
        content=event.content(),
        signature_ok=event.verify(),
    )


def listing_filter() -> Filter:
    """Every mesh-llm listing: kind 31990 marked with our `k` tag (other apps use the kind too)."""
    return Filter().kind(Kind(KIND)).custom_tag(SingleLetterTag.from_byte(ord("k")), MARKER).limit(MAX_EVENTS)


async def client_for(relays: Sequence[str]) -> Client:
    """A client with the relays added (not yet connected); a bad URL is a RelayError."""
    client = Client()
    for url in relays:
        try:
            await client.add_relay(RelayUrl.parse(url))
        except SdkError as bad:
            raise RelayError(f"{url}: {bad}") from None
    return client


class Publication:
    """One long-lived client that sends this node's listings to the relays."""

    def __init__(self, keys: Keys, client: Client, timeout: float = RELAY_TIMEOUT) -> None:
        self.keys = keys
        self.client = client
        self.timeout = timedelta(seconds=timeout)  # to connect, then to be answered

    @property
    def pubkey(self) -> str:
        return self.keys.public_key().to_hex()

    async def publish(self, listing: Listing) -> list[str]:
        """The relays that took the listing; RelayError when none did."""
        # Reconnects the relays that dropped since the last round; connected ones are left as they are.
        await self.client.connect(self.timeout)
        try:
            output = await self.client.send_event(event_of(listing, self.keys), ok_timeout=self.timeout)
        except SdkError as failure:
            raise RelayError(str(failure)) from None
        if not output.success:
            raise RelayError("; ".join(f"{url}: {why}" for url, why in output.failed.items()) or "no relay")
        return [str(url) for url in output.success]

    async def close(self) -> None:
        await self.client.shutdown()


@dataclass(frozen=True)
class Directory:
    """What the relays hold: the listings believed, the refusals counted, and who answered."""

    reading: Reading
    relays: tuple[str, ...]  # asked
    answered: tuple[str, ...]  # connected when the read ended


async def read_directory(relays: Sequence[str], timeout: float, now: float) -> Directory:
    """Every mesh's newest live listing on the relays, read within about `timeout` seconds, judged
    as of `now` (Unix seconds: tests read as of a later time to see listings expire)."""
    if not relays:
        return Directory(read_all((), now), (), ())
    client = await client_for(relays)
    try:
        await client.connect(timedelta(seconds=timeout / 2))
        try:
            events = await client.fetch_events(ReqTarget.auto([listing_filter()]), timedelta(seconds=timeout / 2))
        except SdkError:
            # No relay connected (all down, no network): an empty directory, shown as unanswered.
            events = []
        answered = tuple(str(url) for url, relay in (await client.relays()).items() if relay.status() == RelayStatus.CONNECTED)
    finally:
        await client.shutdown()
    return Directory(read_all((untrusted(event) for event in events), now), tuple(relays), answered)

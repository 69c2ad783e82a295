"""Public listings on Nostr relays: the node's key, publishing (nostr-sdk), reading (NIP-01 by hand).

Owns <home>/nostr.key (the node's Nostr secret key, private to us, made on first use), the
nostr-sdk client that publishes and the websocket reads of the directory. What a listing says and
whether a read one is believed is listing.py's: events are built from content_of/tags_of, and
everything read goes through read_all with nostr-sdk's Event.verify() as its signature verdict.
The loop that decides when to publish is publisher.py's.

Relays are other people's servers: one may be down, slow or lying. Publishing succeeds when any
relay took the event; reading keeps what every relay returned and lets listing.py sort it out.
Reading is a plain REQ ... EOSE over `websockets` because nostr-sdk's Client (0.45) drops events
that are expired or fail verification before handing them over, with no option to keep them
(verify_subscriptions only concerns filter matching): listing.py must see them to count them.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

import websockets
from nostr_sdk import Client, Event, EventBuilder, Filter, Keys, Kind, NostrSdkError, RelayUrl, SingleLetterTag, Tag, Timestamp

from services.gateway.discovery.listing import KIND, MARKER, Listing, ListingEvent, Reading, Rejection, content_of, read_all, tags_of

KEY_FILE = "nostr.key"
RELAY_TIMEOUT = 5.0  # seconds for relays' websockets to open, then again for their OK: a slower relay is skipped this round
# nostr-sdk's exception base: its generated module rebinds the name to a namespace class, which type checkers take for the class.
SdkError = cast("type[Exception]", NostrSdkError)
MAX_EVENTS = 2000  # listings read from each relay at most: a flood beyond is not read
# A relay message past this ends that relay's read (what came before is kept); a listing readers
# accept is far smaller (4 KiB of content, four short tags). websockets' default, made explicit.
MAX_MESSAGE_BYTES = 2**20
CLOSE_TIMEOUT = 1.0  # seconds for a relay to answer our close once it sent everything: then the socket is dropped
SUBSCRIPTION = "mesh-llm-directory"  # our REQ's id: the relay tags its EVENTs and EOSE with it


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
    answered: tuple[str, ...]  # whose websocket opened (what they sent before any failure is read)


def request() -> str:
    """The NIP-01 REQ for every mesh-llm listing."""
    return json.dumps(["REQ", SUBSCRIPTION, json.loads(listing_filter().as_json())])


@dataclass(frozen=True)
class Received:
    """What one relay message means to a read."""

    event: str | None = None  # an EVENT's event, as JSON, for our subscription (unchecked: maybe not an event at all)
    done: bool = False  # EOSE or CLOSED for our subscription: the relay sends no more stored events


def received(message: str | bytes) -> Received:
    """A relay message read: an event, the end, or nothing (NOTICE, AUTH, OK, other subscriptions, garbage)."""
    try:
        parsed = json.loads(message)
    except (ValueError, RecursionError):  # a relay speaking nonsense: no listing to count, so nothing
        return Received()
    if not isinstance(parsed, list) or len(parsed) < 2 or parsed[1] != SUBSCRIPTION:
        return Received()
    if parsed[0] == "EVENT" and len(parsed) >= 3:
        return Received(event=json.dumps(parsed[2]))
    return Received(done=parsed[0] in ("EOSE", "CLOSED"))


def reading_of(events: Iterable[str], now: float) -> Reading:
    """What the events the relays returned (JSON, untrusted) say as of `now`: parsed by nostr-sdk,
    each distinct one once (relays repeat each other), judged by listing.py; one nostr-sdk cannot
    parse is malformed."""
    parsed: dict[str, Event] = {}
    unparsed: set[str] = set()
    for text in events:
        try:
            event = Event.from_json(text)
        except SdkError:
            unparsed.add(text)
            continue
        parsed.setdefault(event.as_json(), event)
    reading = read_all((untrusted(event) for event in parsed.values()), now)
    return Reading(reading.listings, reading.rejected + Counter({Rejection.MALFORMED: len(unparsed)}))


@dataclass(frozen=True)
class RelayAnswer:
    events: tuple[str, ...]  # the events it sent for our REQ, as JSON
    connected: bool  # its websocket opened


async def read_relay(url: str, timeout: float) -> RelayAnswer:
    """Every listing one relay returns within `timeout` seconds, up to its EOSE; what came before a
    failure is kept."""
    events: list[str] = []
    connected = False
    try:
        async with asyncio.timeout(timeout):
            async with websockets.connect(url, open_timeout=None, close_timeout=CLOSE_TIMEOUT, max_size=MAX_MESSAGE_BYTES, proxy=None) as socket:
                connected = True
                await socket.send(request())
                async for message in socket:
                    answer = received(message)
                    if answer.event is not None:
                        events.append(answer.event)
                    if answer.done or len(events) >= MAX_EVENTS:
                        break
    # A relay down, slow, refusing or dropping us mid-read: it is one of several, and what it sent is kept.
    except (TimeoutError, OSError, websockets.WebSocketException):
        pass
    return RelayAnswer(tuple(events), connected)


async def read_directory(relays: Sequence[str], timeout: float, now: float) -> Directory:
    """Every mesh's newest live listing on the relays, read within about `timeout` seconds, judged
    as of `now` (Unix seconds: tests read as of a later time to see listings expire); a bad URL is
    a RelayError."""
    for url in relays:
        try:
            RelayUrl.parse(url)
        except SdkError as bad:
            raise RelayError(f"{url}: {bad}") from None
    async with asyncio.TaskGroup() as group:
        reads = [group.create_task(read_relay(url, timeout)) for url in relays]
    answers = [read.result() for read in reads]
    reading = reading_of((event for answer in answers for event in answer.events), now)
    answered = tuple(url for url, answer in zip(relays, answers, strict=True) if answer.connected)
    return Directory(reading, tuple(relays), answered)

"""A public mesh's listing on Nostr, as data: what the publisher writes and what a reader accepts.

A listing is a NIP-89-style addressable event (kind 31990) whose `d` tag is the mesh id, with a
NIP-40 `expiration` and a `k`/`t` tag that marks it as mesh-llm's. Every member that publishes
signs with its own key, so one mesh may have several live listings (one per publisher); readers
group by mesh id and keep the newest, so a member takes over when the publisher disappears.

Listings are untrusted input and relays differ (some return expired or superseded copies), so the
reader checks everything itself: the signature (verified by the caller with nostr-sdk, passed in
as `signature_ok`), expiry against its own clock, a bound on every size, the schema, and the
agreement between envelope and content. Each rejection is counted by reason and never stops the
others being read: one bad listing must not poison `--auto`.

Pure: no I/O, no nostr-sdk; the relay client and the signing live in the shell that calls this.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

KIND = 31990  # NIP-89 application handler, addressable (30000-39999): one event per (author, kind, d)
MARKER = "mesh-llm"  # the `k` and `t` tag value that a relay query filters on
MAX_CONTENT_BYTES = 4096  # nostr-relay's default max_event_size: a larger listing is refused there
MAX_ENTRIES = 64  # per list (served, wanted) and tags per event
MAX_STRING = 256  # names, regions, model names, versions, tag values
MAX_TOKEN_CHARS = 1024  # the public-join token carries addresses and a fingerprint, so it gets more room
MAX_LIFETIME_S = 3600  # publishers expire listings after 120 s; an hour-long one would outlive a dead mesh
FUTURE_SLACK_S = 120  # clock skew we forgive; more, and a forged date would win newest() until it expires
MAX_COUNT = 2**31 - 1  # nodes, clients, max clients
MAX_MEMORY_BYTES = 2**63 - 1

_HEX = frozenset("0123456789abcdef")


class Rejection(StrEnum):
    """Why a listing was not accepted."""

    MALFORMED = "malformed"  # not our schema (JSON, a field, a tag), or an expiration not within an hour after creation
    OVERSIZED = "oversized"  # content, a list, a string or the tags past their bound
    UNSIGNED = "unsigned"  # no valid signature by its pubkey
    EXPIRED = "expired"  # its expiration has passed on the reader's clock
    MISMATCHED = "mismatched"  # another kind or app, or a `d` tag naming another mesh than its content
    FULL = "full"  # its clients reached max clients: delisted until one leaves
    FUTURE = "future"  # dated ahead of the reader's clock by more than the skew forgiven


@dataclass(frozen=True)
class Listing:
    mesh_id: str
    name: str  # "" for an unnamed mesh
    region: str  # "" when the publisher gave none
    served: tuple[str, ...]  # models some node serves now
    wanted: tuple[str, ...]  # models the mesh asks for that no node serves
    memory_bytes: int  # memory for models across the mesh's serving nodes
    node_count: int  # serving nodes
    client_count: int  # API-only nodes
    max_clients: int  # 0: no limit
    version: str  # the publisher's mesh-llm version
    join_token: str  # the public-join credential: separate from the mesh secret, revocable
    community: bool  # a mesh meant for anyone (scored up by --auto)
    publisher: str  # the signer's public key, 64 hex characters
    created_at: int  # Unix seconds, the event's created_at
    expires_at: int  # Unix seconds, the event's NIP-40 expiration

    @property
    def full(self) -> bool:
        return is_full(self.client_count, self.max_clients)


@dataclass(frozen=True)
class ListingEvent:
    """An event as a relay returned it, already parsed by nostr-sdk: every field is untrusted."""

    pubkey: str  # hex
    kind: int
    created_at: int  # Unix seconds
    tags: Sequence[Sequence[str]]
    content: str
    signature_ok: bool  # nostr-sdk's Event.verify(): the id matches and the signature is the pubkey's


@dataclass(frozen=True)
class Reading:
    """What a reader makes of a relay's answer: the newest live listing per mesh, and what it refused."""

    listings: tuple[Listing, ...]  # one per mesh id, sorted by mesh id
    rejected: Counter[Rejection]


def is_full(client_count: int, max_clients: int) -> bool:
    """Whether a mesh takes no more clients: shared by the reader (delists) and --auto (scores down)."""
    return max_clients > 0 and client_count >= max_clients


def content_of(listing: Listing) -> str:
    """The event content: compact JSON of everything not already in the envelope."""
    body = {
        "mesh_id": listing.mesh_id,
        "name": listing.name,
        "region": listing.region,
        "served": list(listing.served),
        "wanted": list(listing.wanted),
        "memory_bytes": listing.memory_bytes,
        "nodes": listing.node_count,
        "clients": listing.client_count,
        "max_clients": listing.max_clients,
        "version": listing.version,
        "join": listing.join_token,
        "community": listing.community,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def tags_of(listing: Listing) -> list[list[str]]:
    """The event tags: the mesh id as `d` (its address), NIP-40 expiration, and the mesh-llm markers."""
    return [["d", listing.mesh_id], ["expiration", str(listing.expires_at)], ["k", MARKER], ["t", MARKER]]


def fit(listing: Listing) -> Listing:
    """The listing trimmed to what readers accept: wanted models go first, then served ones.

    Raises ValueError when it cannot fit (a field other than the model lists is past its bound):
    that is a settings error, caught before anything is published."""
    served = tuple(dict.fromkeys(model for model in listing.served if _is_model(model)))[:MAX_ENTRIES]
    wanted = tuple(dict.fromkeys(model for model in listing.wanted if _is_model(model)))[:MAX_ENTRIES]
    trimmed = replace(listing, served=served, wanted=wanted)
    while _content_bytes(trimmed) > MAX_CONTENT_BYTES and (trimmed.wanted or trimmed.served):
        if trimmed.wanted:
            trimmed = replace(trimmed, wanted=trimmed.wanted[:-1])
        else:
            trimmed = replace(trimmed, served=trimmed.served[:-1])
    event = ListingEvent(trimmed.publisher, KIND, trimmed.created_at, tags_of(trimmed), content_of(trimmed), signature_ok=True)
    verdict = _check(event, now=trimmed.created_at)
    if not isinstance(verdict, Listing):
        raise ValueError(f"readers would refuse this mesh's listing as {verdict}: check its name, region and version")
    return trimmed


def read(event: ListingEvent, now: float) -> Listing | Rejection:
    """The listing an event carries, or why it is refused."""
    verdict = _check(event, now)
    if isinstance(verdict, Listing) and verdict.full:
        return Rejection.FULL
    return verdict


def read_all(events: Iterable[ListingEvent], now: float) -> Reading:
    """The newest acceptable listing of each mesh, with every refusal counted by reason.

    A mesh whose newest listing is full is delisted: an older copy that was not full (another
    member's, still unexpired) does not bring it back."""
    rejected: Counter[Rejection] = Counter()
    accepted: list[Listing] = []
    for event in events:
        verdict = _check(event, now)
        if isinstance(verdict, Rejection):
            rejected[verdict] += 1
        else:
            accepted.append(verdict)
    listings: list[Listing] = []
    for listing in newest(accepted):
        if listing.full:
            rejected[Rejection.FULL] += 1
        else:
            listings.append(listing)
    return Reading(tuple(listings), rejected)


def newest(listings: Iterable[Listing]) -> tuple[Listing, ...]:
    """One listing per mesh id, whoever published it: the latest created_at, sorted by mesh id.

    Ties (the same second) go to the later expiration, then to a total order over the rest, so
    the answer never depends on the order relays returned events in."""
    best: dict[str, Listing] = {}
    for listing in listings:
        current = best.get(listing.mesh_id)
        if current is None or _recency(listing) > _recency(current):
            best[listing.mesh_id] = listing
    return tuple(best[mesh_id] for mesh_id in sorted(best))


def _recency(listing: Listing) -> tuple[int, int, str, str]:
    return (listing.created_at, listing.expires_at, listing.publisher, content_of(listing))


def _check(event: ListingEvent, now: float) -> Listing | Rejection:
    """Every check but fullness, cheapest and most telling first."""
    if not event.signature_ok:
        return Rejection.UNSIGNED
    if event.kind != KIND:
        return Rejection.MISMATCHED
    if _content_bytes_of(event.content) > MAX_CONTENT_BYTES or len(event.tags) > MAX_ENTRIES:
        return Rejection.OVERSIZED
    if any(len(tag) > MAX_ENTRIES or any(len(value) > MAX_STRING for value in tag) for tag in event.tags):
        return Rejection.OVERSIZED
    if not _is_pubkey(event.pubkey) or event.created_at < 0:
        return Rejection.MALFORMED
    envelope = _envelope(event.tags)
    if isinstance(envelope, Rejection):
        return envelope
    mesh_id, expires_at = envelope
    if expires_at <= event.created_at or expires_at - event.created_at > MAX_LIFETIME_S:
        return Rejection.MALFORMED
    if event.created_at > now + FUTURE_SLACK_S:
        return Rejection.FUTURE
    if expires_at <= now:
        return Rejection.EXPIRED
    listing = _body(event.content, publisher=event.pubkey, created_at=event.created_at, expires_at=expires_at)
    if isinstance(listing, Listing) and listing.mesh_id != mesh_id:
        return Rejection.MISMATCHED
    return listing


def _envelope(tags: Sequence[Sequence[str]]) -> tuple[str, int] | Rejection:
    """The mesh id (the first `d`) and the expiration from the tags, checking the mesh-llm marker."""
    if any(len(tag) == 0 for tag in tags):
        return Rejection.MALFORMED
    first = {tag[0]: tag[1:] for tag in reversed(tags)}  # the first tag of each name wins, as in NIP-01
    if ["k", MARKER] not in [list(tag[:2]) for tag in tags]:
        return Rejection.MISMATCHED
    d, expiration = first.get("d", ()), first.get("expiration", ())
    if not d or not _is_text(d[0]) or not expiration or not expiration[0].isascii() or not expiration[0].isdigit():
        return Rejection.MALFORMED
    return d[0], int(expiration[0])


_TEXT_BOUNDS = {"mesh_id": MAX_STRING, "name": MAX_STRING, "region": MAX_STRING, "version": MAX_STRING, "join": MAX_TOKEN_CHARS}
_COUNT_BOUNDS = {"memory_bytes": MAX_MEMORY_BYTES, "nodes": MAX_COUNT, "clients": MAX_COUNT, "max_clients": MAX_COUNT}
_MODEL_LISTS = ("served", "wanted")


def _body(content: str, *, publisher: str, created_at: int, expires_at: int) -> Listing | Rejection:
    """The listing the content describes, or why it is refused."""
    try:
        fields = json.loads(content)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays fit in 4 KiB
        return Rejection.MALFORMED
    if not isinstance(fields, dict):
        return Rejection.MALFORMED
    if _oversized(fields):
        return Rejection.OVERSIZED
    if not _schema_ok(fields):
        return Rejection.MALFORMED
    return Listing(
        mesh_id=fields["mesh_id"],
        name=fields["name"],
        region=fields["region"],
        served=tuple(dict.fromkeys(fields["served"])),  # a duplicate would count twice in --auto's score
        wanted=tuple(dict.fromkeys(fields["wanted"])),
        memory_bytes=fields["memory_bytes"],
        node_count=fields["nodes"],
        client_count=fields["clients"],
        max_clients=fields["max_clients"],
        version=fields["version"],
        join_token=fields["join"],
        community=fields["community"],
        publisher=publisher,
        created_at=created_at,
        expires_at=expires_at,
    )


def _oversized(fields: dict[str, Any]) -> bool:
    """A list or a string past its bound (whatever its type otherwise: that is _schema_ok's)."""
    if any(isinstance(fields.get(key), str) and len(fields[key]) > bound for key, bound in _TEXT_BOUNDS.items()):
        return True
    models = [fields.get(key) for key in _MODEL_LISTS]
    lists = [value for value in models if isinstance(value, list)]
    return any(len(value) > MAX_ENTRIES for value in lists) or any(isinstance(model, str) and len(model) > MAX_STRING for value in lists for model in value)


def _schema_ok(fields: dict[str, Any]) -> bool:
    """Every field present with its type; text printable (it reaches terminals), counts in range."""
    if not isinstance(fields.get("community"), bool):
        return False
    # join: "" from a publisher without a public-join credential yet: listed, shown, not joinable.
    if not all(_is_text(fields.get(key), allow_empty=key in ("name", "region", "join")) for key in _TEXT_BOUNDS):
        return False
    for key in _MODEL_LISTS:
        models = fields.get(key)
        if not isinstance(models, list) or not all(_is_model(model) for model in models):
            return False
    return all(_is_count(fields.get(key), bound) for key, bound in _COUNT_BOUNDS.items())


def _is_text(value: object, *, allow_empty: bool = False) -> bool:
    return isinstance(value, str) and (allow_empty or value != "") and value.isprintable()


def _is_model(value: object) -> bool:
    return _is_text(value) and len(str(value)) <= MAX_STRING


def _is_count(value: object, bound: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= bound


def _is_pubkey(value: str) -> bool:
    return len(value) == 64 and set(value) <= _HEX


def _content_bytes(listing: Listing) -> int:
    return _content_bytes_of(content_of(listing))


def _content_bytes_of(content: str) -> int:
    return len(content.encode("utf-8", errors="surrogatepass"))

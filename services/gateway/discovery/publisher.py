"""Publishing a public mesh's listing on Nostr: whether this node's turn, what it says, when.

The mesh is published when a member was started with --publish: gossip spreads that setting to
every member (services/common/publicity.py), and one live member, the same for all, publishes.
That one sends a listing every `interval` seconds, each expiring LIFETIME seconds after it was
made, and at once (but not more than once every MIN_GAP) when what it says changes. When it
disappears, the member elected next publishes, and its listing replaces the old one for readers
(the newest per mesh). While the mesh is full (clients at --max-clients) the listing says so
once, which delists it, and is not renewed.

A listing never holds the mesh secret nor an invite token: only what listing.Listing names, with
the public-join credential (revocable, separate from the secret) as its token.

The decisions are pure functions over the mesh view and `now`; Publisher only follows the view,
asks them, and sends. A relay failure is logged and retried: it never stops the gateway.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from services.common import clock, credentials, publicity
from services.common.logs import event
from services.common.records import MeshView, ProcessKind, ProcessState, Role
from services.gateway.discovery.listing import Listing, fit
from services.gateway.mirror import MeshMirror

if TYPE_CHECKING:
    from services.gateway.discovery.nostr import Publication

log = logging.getLogger(__name__)

LIFETIME = 120  # seconds a listing lives (NIP-40 expiration): two intervals, so one lost renewal does not delist a live mesh
MIN_GAP = 5.0  # seconds between two publications at least when the listing changes: a busy mesh must not flood relays
RETRY = 10.0  # seconds before trying the relays again after none took the listing


@dataclass(frozen=True)
class Quiet:
    """Why this node publishes nothing now."""

    reason: str


def turn(view: MeshView) -> Quiet | None:
    """None when this node is the one that publishes the mesh's listing; else why not."""
    if not view.mesh_id or not view.own.node_id:
        return Quiet("the mesh is not known yet")
    elected = publicity.publisher(view)
    if not elected:
        return Quiet("the mesh is not published")
    if elected != view.own.node_id:
        return Quiet(f"node {elected} publishes the listing")
    return None


def listing_of(view: MeshView, publisher: str, version: str, join_token: str, now: int) -> Listing:
    """The listing this node publishes for its mesh, cut to what readers accept (ValueError: it cannot be)."""
    settings = view.own.publicity
    members = [view.own, *(peer.record for peer in view.peers)]
    served = sorted({s.model_id for r in members for s in r.served if s.kind == ProcessKind.LLAMA_SERVER and s.state == ProcessState.READY})
    nodes = [record for record in members if record.role != Role.CLIENT]
    listing = Listing(
        mesh_id=view.mesh_id,
        name=settings.mesh_name,
        region=settings.region,
        served=tuple(served),
        wanted=tuple(sorted({demand.model_id for demand in view.demand} - set(served))),
        memory_bytes=sum(record.memory_offered_bytes for record in nodes),
        node_count=len(nodes),
        client_count=len(members) - len(nodes),
        max_clients=settings.max_clients,
        version=version or "unknown",
        join_token=join_token,
        community=False,
        publisher=publisher,
        created_at=now,
        expires_at=now + LIFETIME,
    )
    return fit(listing)


def wait_before(listing: Listing, last: Listing | None, last_at: float, now: float, interval: float) -> float:
    """Seconds until `listing` is due: 0 now, inf while nothing is (full, already said)."""
    if last is None:
        return 0.0
    if _said(listing) != _said(last):
        return max(0.0, last_at + min(MIN_GAP, interval) - now)  # never later than the renewal would send it
    if listing.full:
        return math.inf  # the full listing already delists the mesh: renewing it would only keep that news alive
    return max(0.0, last_at + interval - now)


def _join_token(view: MeshView) -> str:
    """The public-join credential readers use to join: never the mesh secret nor an invite token."""
    if not (view.secret and view.address):
        return ""  # a paired or public node cannot hand out a credential: it publishes without one
    return credentials.current_public_token(view.mesh_id, view.secret, view.revoked, [view.address])


def _said(listing: Listing) -> Listing:
    """What a listing tells readers, apart from when it was made."""
    return replace(listing, created_at=0, expires_at=0)


class Publisher:
    """Follows the mesh view and publishes the listing on the relays while it is this node's turn."""

    def __init__(self, mirror: MeshMirror, relays: list[str], home: Path, interval: float, version: str, relay_timeout: float = 0.0) -> None:
        self.mirror = mirror
        self.relays = relays
        self.relay_timeout = relay_timeout  # seconds for relays to connect, then to answer; 0: nostr.RELAY_TIMEOUT
        self.home = home  # where the node's Nostr key lives
        self.interval = interval
        self.version = version
        self._publication: Publication | None = None
        self._last: Listing | None = None
        self._last_at = 0.0
        self._not_before = 0.0  # after a failure: no new attempt before this time
        self._quiet = ""

    async def run(self) -> None:
        try:
            while True:
                seen = self.mirror.changes.version
                wait = await self._step(self.mirror.view, clock.now())
                await self.mirror.changes.wait_newer(seen, None if math.isinf(wait) else wait)
        finally:
            if self._publication is not None:
                await self._publication.close()

    async def _step(self, view: MeshView, now: float) -> float:
        """Publish when due; the seconds until the next step is due (inf: on the next view change)."""
        quiet = turn(view)
        if quiet is not None:
            self._say_quiet(quiet.reason, logging.DEBUG)
            self._last = None  # our turn again later: publish at once then
            return math.inf
        if now < self._not_before:
            return self._not_before - now
        # Only a publishing node loads the Nostr client (~0.15 s of CPU at every gateway's start otherwise).
        from services.gateway.discovery import nostr

        try:
            publication = await self._open()
            listing = listing_of(view, publication.pubkey, self.version, _join_token(view), int(now))
            wait = wait_before(listing, self._last, self._last_at, now, self.interval)
            if wait > 0:
                return wait
            relays = await publication.publish(listing)
        except ValueError as bad:
            # The mesh's name, region or version is past what readers accept: a settings error, said once.
            self._say_quiet(str(bad), logging.WARNING)
            return math.inf
        except nostr.RelayError as failure:
            # Relays come and go: the listing still up (if any) lives until it expires; try again soon.
            event(log, "listing not published", logging.WARNING, error=str(failure), retry_in=RETRY)
            self._not_before = now + RETRY
            return RETRY
        renewal = self._last is not None and _said(self._last) == _said(listing)
        self._last, self._last_at, self._quiet = listing, now, ""
        # A renewal is routine (every interval): only what changed is worth a line at INFO.
        level = logging.DEBUG if renewal else logging.INFO
        event(log, "listing published", level, mesh=listing.mesh_id, relays=",".join(relays), pubkey=publication.pubkey, full=listing.full)
        return self.interval if not listing.full else math.inf

    async def _open(self) -> Publication:
        from services.gateway.discovery import nostr

        if self._publication is None:
            keys = nostr.load_or_create_keys(self.home)
            self._publication = nostr.Publication(keys, await nostr.client_for(self.relays), self.relay_timeout or nostr.RELAY_TIMEOUT)
        return self._publication

    def _say_quiet(self, reason: str, level: int) -> None:
        if reason != self._quiet:
            event(log, "listing not published", level, reason=reason)
            self._quiet = reason

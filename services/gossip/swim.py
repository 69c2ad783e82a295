"""Membership state and its merge rules (SWIM-style): pure functions over frozen members.

Owns: which of two views of a member wins, suspicion expiry, and refutation. A member's record
and its liveness are merged separately, each by a total order, so merging is commutative,
associative and idempotent: any order of delivery gives the same state. No I/O, no clocks
(`now` is passed in).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from services.common.records import NodeRecord, PeerStatus

ALIVE, SUSPECT, DEAD, LEFT = PeerStatus.ALIVE, PeerStatus.SUSPECT, PeerStatus.DEAD, PeerStatus.LEFT  # short names for the rules
# At the same incarnation, worse news wins: a suspicion overrides alive, death overrides both.
_RANK = {ALIVE: 0, SUSPECT: 1, DEAD: 2, LEFT: 3}


@dataclass(frozen=True)
class Member:
    record: NodeRecord
    address: str
    status: PeerStatus = ALIVE
    incarnation: int = 0
    # Local bookkeeping, never gossiped and not part of the merge: when the status last changed.
    status_since: float = 0.0

    @property
    def node_id(self) -> str:
        return self.record.node_id


def record_key(member: Member) -> tuple[int, str]:
    """Newer version wins; equal versions are ordered by content so the choice is the same everywhere."""
    digest = hashlib.sha256(repr((member.record, member.address)).encode()).hexdigest()
    return member.record.version, digest


def liveness_key(member: Member) -> tuple[int, int]:
    return member.incarnation, _RANK[member.status]


def merge_member(local: Member | None, remote: Member, now: float) -> Member:
    """One member's merged view: the newer record and the stronger liveness claim."""
    if local is None:
        return replace(remote, status_since=now)
    newest = max(local, remote, key=record_key)
    live = max(local, remote, key=liveness_key)
    since = local.status_since if (live.status, live.incarnation) == (local.status, local.incarnation) else now
    return Member(newest.record, newest.address, live.status, live.incarnation, since)


def merge(local: Mapping[str, Member], remote: Iterable[Member], self_id: str, now: float) -> dict[str, Member]:
    """Every member of `local` and `remote` merged; entries about this node itself are left to refute()."""
    merged = dict(local)
    for member in remote:
        if member.node_id != self_id:
            merged[member.node_id] = merge_member(merged.get(member.node_id), member, now)
    return merged


def refute(own_incarnation: int, remote: Iterable[Member], self_id: str) -> int:
    """The incarnation this node must announce so that any suspicion of it is overridden."""
    claims = [m.incarnation for m in remote if m.node_id == self_id and m.status != ALIVE]
    return max([own_incarnation, *(claim + 1 for claim in claims)])


def suspect(member: Member, now: float) -> Member:
    return member if member.status != ALIVE else replace(member, status=SUSPECT, status_since=now)


def expire(members: Mapping[str, Member], now: float, suspicion_timeout: float) -> dict[str, Member]:
    """Suspects that stayed unrefuted for `suspicion_timeout` seconds are declared dead."""
    return {
        node_id: replace(m, status=DEAD, status_since=now) if m.status == SUSPECT and now - m.status_since >= suspicion_timeout else m
        for node_id, m in members.items()
    }


def forget(members: Mapping[str, Member], now: float, after: float) -> dict[str, Member]:
    """Drop tombstones (dead or left) older than `after` seconds."""
    return {node_id: m for node_id, m in members.items() if m.status in (ALIVE, SUSPECT) or now - m.status_since < after}


def live(members: Mapping[str, Member]) -> list[Member]:
    return [m for m in members.values() if m.status in (ALIVE, SUSPECT)]

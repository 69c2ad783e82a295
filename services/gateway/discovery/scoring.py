"""`--auto`'s choice among the meshes it found: a score per mesh, with the rules that made it.

The rules are the seed's: base 100, +300 for a community mesh, +500 for the mesh this node joined
last time, -1000 when full, +5 per node up to 10 nodes, +10 per served model, +15 per wanted model
this node could serve. Only a mesh scoring above 0 is viable; a full one scores below 0 unless it
is the last-joined mesh with much else going for it. With none viable, --auto starts its own mesh.

Region (--region): a mesh that lists another region, or none, is dropped, as in the seed, since
the user asked for nearby machines and a directory mesh without a region may be anywhere. A mesh
seen on the LAN is kept whatever its region: it is nearby by the way it was found.

Everything a listing says is the publisher's claim (community, nodes, models): a listing can buy
at most what its bounds allow (listing.py), and probing the best few before joining is the shell's.
Pure: no I/O; the caller merges what the LAN and the directory say about one mesh into one
Candidate, probes, and joins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from services.gateway.discovery.listing import Listing, is_full

BASE = 100  # any mesh we can see is alive
COMMUNITY = 300  # meshes meant for anyone are where a newcomer belongs
LAST_JOINED = 500  # strong but finite: a dead or degraded last mesh loses on the rest
FULL = -1000  # outweighs everything but a last-joined mesh with many models
PER_NODE = 5  # more nodes, more resilient ...
NODES_COUNTED = 10  # ... up to here: past it, size says little and is easy to claim
PER_SERVED = 10  # warm models this node can use at once
PER_WANTED = 15  # models the mesh asks for that this node holds: it is useful there


class Rule(StrEnum):
    """A scoring rule, as `discover --auto --dry-run` names it."""

    BASE = "base"
    COMMUNITY = "community"
    LAST_JOINED = "last joined"
    FULL = "full"
    NODES = "nodes"
    SERVED = "served models"
    WANTED = "wanted models"


@dataclass(frozen=True)
class Candidate:
    """A mesh --auto could join, from the LAN, the directory or both (the caller merges them)."""

    mesh_id: str
    name: str  # "" when unnamed
    region: str  # "" when unknown
    community: bool
    node_count: int
    client_count: int
    max_clients: int  # 0: no limit
    served: frozenset[str]
    wanted: frozenset[str]
    nearby: bool  # seen on the LAN: kept whatever --region says

    @property
    def full(self) -> bool:
        return is_full(self.client_count, self.max_clients)


@dataclass(frozen=True)
class Preferences:
    """What the joining node brings to the choice."""

    region: str  # --region; "" for anywhere
    last_mesh_id: str  # the mesh joined last time; "" for none
    held: frozenset[str]  # models this node has and could serve; empty for --client


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    score: int
    parts: tuple[tuple[Rule, int], ...]  # the rules that applied, in Rule's order; they sum to score

    @property
    def viable(self) -> bool:
        """Worth probing: the seed's rule that only a positive score is joined."""
        return self.score > 0


def candidate_of(listing: Listing) -> Candidate:
    """A directory listing as a candidate (not nearby: the LAN did not see it)."""
    return Candidate(
        mesh_id=listing.mesh_id,
        name=listing.name,
        region=listing.region,
        community=listing.community,
        node_count=listing.node_count,
        client_count=listing.client_count,
        max_clients=listing.max_clients,
        served=frozenset(listing.served),
        wanted=frozenset(listing.wanted),
        nearby=False,
    )


def rank(candidates: Iterable[Candidate], preferences: Preferences) -> tuple[Scored, ...]:
    """The candidates in the region, best first; ties by mesh id, then the nearby one first."""
    kept = [candidate for candidate in candidates if in_region(candidate, preferences.region)]
    scored = [score(candidate, preferences) for candidate in kept]
    return tuple(sorted(scored, key=lambda each: (-each.score, each.candidate.mesh_id, not each.candidate.nearby)))


def in_region(candidate: Candidate, region: str) -> bool:
    """Whether --region keeps the candidate (see the module docstring); regions match case-insensitively."""
    if not region.strip() or candidate.nearby:
        return True
    return candidate.region.strip().casefold() == region.strip().casefold()


def score(candidate: Candidate, preferences: Preferences) -> Scored:
    parts = [
        (Rule.BASE, BASE),
        (Rule.COMMUNITY, COMMUNITY if candidate.community else 0),
        (Rule.LAST_JOINED, LAST_JOINED if preferences.last_mesh_id and candidate.mesh_id == preferences.last_mesh_id else 0),
        (Rule.FULL, FULL if candidate.full else 0),
        (Rule.NODES, PER_NODE * min(max(candidate.node_count, 0), NODES_COUNTED)),
        (Rule.SERVED, PER_SERVED * len(candidate.served)),
        (Rule.WANTED, PER_WANTED * len(candidate.wanted & preferences.held)),
    ]
    applied = tuple((rule, points) for rule, points in parts if points)
    return Scored(candidate, sum(points for _, points in applied), applied)

"""`--auto`'s decisions: which meshes it could join, which to probe, which to join, and which model
to serve when it starts a mesh of its own.

The meshes come from two untrusted sources, the LAN's announcements and the directory's listings
(already checked by listing.py); one mesh may appear in both. Only a listing carries a public-join
token, so a mesh seen only on the LAN is ranked but not joined: getting into it takes a member's
approval (`--join-nearby`), which --auto must not pretend to have. A listing's token is decoded
here, and a token for another mesh than the listing names is refused, like a mismatched listing.

Pure: no I/O. The shell (services/cli/auto.py) browses, reads the relays, probes the shortlist's
addresses (ping.py) and passes the answers back to `pick`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from services.common.catalog import CatalogEntry
from services.common.credentials import CredentialError, PublicToken, decode_token
from services.gateway.discovery.announcement import LanMesh
from services.gateway.discovery.listing import Listing
from services.gateway.discovery.scoring import Candidate, Scored, candidate_of

PROBED = 3  # viable, joinable meshes probed at most: the seed's "best few"; past them the scores say little


class Skip(StrEnum):
    """Why a ranked mesh is not joined (beside the listings listing.py refused)."""

    NOT_VIABLE = "score not above 0"
    LAN_ONLY = "seen only on the LAN: joining takes a member's approval"
    NO_TOKEN = "listed without a join token"
    BAD_TOKEN = "join token unreadable or for another mesh"
    UNREACHABLE = "no answer from its addresses"
    VERSION = "another mesh-llm release"
    NOT_PROBED = "not probed: better ones came first"
    OUTRANKED = "answered, but a better one did too"


@dataclass(frozen=True)
class Option:
    """A ranked mesh, with the token to join it by (None when it has none that works)."""

    scored: Scored
    token: PublicToken | None
    version: str  # the mesh-llm version its listing or announcement claims; "" when unknown
    skip: Skip | None  # why it cannot be joined whatever the probe says; None: a candidate to probe


@dataclass(frozen=True)
class Probe:
    """What probing one mesh's addresses found."""

    rtt: float | None  # seconds to the nearest address that answered; None: none did


def candidates(lan: Iterable[LanMesh], listings: Iterable[Listing]) -> tuple[Candidate, ...]:
    """One candidate per mesh id: its listing's claims when listed (marked nearby when the LAN saw
    it too, so --region keeps it), else what its LAN announcements say."""
    heard = {mesh.mesh_id: mesh for mesh in lan}
    listed = {listing.mesh_id: listing for listing in listings}
    merged = [_with_nearby(candidate_of(listing), listing.mesh_id in heard) for listing in listed.values()]
    merged += [_of_lan(mesh) for mesh_id, mesh in heard.items() if mesh_id not in listed]
    return tuple(sorted(merged, key=lambda candidate: candidate.mesh_id))


def options(ranked: Sequence[Scored], listings: Iterable[Listing], lan: Iterable[LanMesh]) -> tuple[Option, ...]:
    """Each ranked mesh with its join token and why it cannot be joined, if it cannot, best first."""
    listed = {listing.mesh_id: listing for listing in listings}
    versions = {mesh.mesh_id: _lan_version(mesh) for mesh in lan}
    result = []
    for scored in ranked:
        listing = listed.get(scored.candidate.mesh_id)
        version = listing.version if listing is not None else versions.get(scored.candidate.mesh_id, "")
        token = _token(listing) if listing is not None else None
        result.append(Option(scored, token, version, _skip(scored, listing, token)))
    return tuple(result)


def shortlist(choices: Sequence[Option], our_version: str) -> tuple[Option, ...]:
    """The best PROBED options that could be joined if they answer: viable, with a token, of our release."""
    joinable = [option for option in choices if option.skip is None and compatible(option.version, our_version)]
    return tuple(joinable[:PROBED])


def pick(short: Sequence[Option], probes: Mapping[str, Probe]) -> Option | None:
    """The first shortlisted mesh (best first) whose addresses answered; None when none did."""
    return next((option for option in short if (probe := probes.get(option.scored.candidate.mesh_id)) and probe.rtt is not None), None)


def skipped(choices: Sequence[Option], short: Sequence[Option], probes: Mapping[str, Probe], our_version: str) -> dict[str, Skip]:
    """Why each mesh that was not picked was passed over, by mesh id (the shell prints it)."""
    shortlisted = {option.scored.candidate.mesh_id for option in short}
    picked = pick(short, probes)
    reasons: dict[str, Skip] = {}
    for option in choices:
        mesh_id = option.scored.candidate.mesh_id
        if option is picked:
            continue
        if option.skip is not None:
            reasons[mesh_id] = option.skip
        elif not compatible(option.version, our_version):
            reasons[mesh_id] = Skip.VERSION
        elif mesh_id not in shortlisted:
            reasons[mesh_id] = Skip.NOT_PROBED
        elif (probe := probes.get(mesh_id)) is None or probe.rtt is None:
            reasons[mesh_id] = Skip.UNREACHABLE
        else:
            reasons[mesh_id] = Skip.OUTRANKED
    return reasons


def token_refusals(choices: Iterable[Option]) -> Counter[Skip]:
    """The listings passed over for their token: counted with listing.py's refusals."""
    return Counter(option.skip for option in choices if option.skip is Skip.NO_TOKEN or option.skip is Skip.BAD_TOKEN)


def compatible(theirs: str, ours: str) -> bool:
    """Whether a mesh's release may be joined: the same major.minor (0.x releases change the wire),
    or either side unknown (a source tree, a publisher without a version), which the join then tests."""
    their_release, our_release = _release(theirs), _release(ours)
    return their_release is None or our_release is None or their_release == our_release


def largest_fitting(entries: Iterable[CatalogEntry], memory_bytes: int, headroom: float, context_bytes: int) -> CatalogEntry | None:
    """The biggest model of `entries` that runs in `memory_bytes` alone, as placement counts memory
    (size with headroom, plus context); ties by name. None when even the smallest does not fit."""
    fitting = [entry for entry in entries if int(entry.size_bytes * (1 + headroom)) + context_bytes <= memory_bytes]
    return max(fitting, key=lambda entry: (entry.size_bytes, entry.name), default=None)


def _with_nearby(candidate: Candidate, nearby: bool) -> Candidate:
    return replace(candidate, nearby=nearby)


def _of_lan(mesh: LanMesh) -> Candidate:
    """A mesh heard only on the LAN: its nodes and models; no region, clients or demand are announced."""
    return Candidate(
        mesh_id=mesh.mesh_id,
        name=mesh.mesh_name,
        region="",
        community=False,
        node_count=len(mesh.nodes),
        client_count=0,
        max_clients=0,
        served=frozenset(mesh.models),
        wanted=frozenset(),
        nearby=True,
    )


def _lan_version(mesh: LanMesh) -> str:
    return next((node.announcement.version for node in mesh.nodes if node.announcement.version), "")


def _token(listing: Listing) -> PublicToken | None:
    if not listing.join_token:
        return None
    try:
        token = decode_token(listing.join_token)
    except CredentialError:
        return None
    return token if token.credential.mesh_id == listing.mesh_id else None


def _skip(scored: Scored, listing: Listing | None, token: PublicToken | None) -> Skip | None:
    if listing is None:
        return Skip.LAN_ONLY
    if not listing.join_token:
        return Skip.NO_TOKEN
    if token is None:
        return Skip.BAD_TOKEN
    if not scored.viable:
        return Skip.NOT_VIABLE
    return None


def _release(version: str) -> tuple[int, int] | None:
    parts = version.strip().split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts[:2]):
        return None
    return int(parts[0]), int(parts[1])

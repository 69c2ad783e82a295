"""Who else may be in the mesh besides the secret's holders: pairing requests, paired nodes'
credentials, revocations, and the public-join credential.

Gossip spreads all of it as a union: revocations and credentials are signed by the mesh authority
(credentials.py), so whatever a peer sends is checked here and what does not verify is dropped;
pairing requests are bounded in number and lifetime. Approving and revoking need the authority's
key, so only a member holding the mesh secret can do either. The public-join credential is derived
from the secret, generation by generation: every member publishes the same token, and revoking it
moves every member to the next generation at once (credentials.public_credential).

Pure: frozen state in, new state out, `now` passed in. The gRPC calls are servicer.py's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from services.common import credentials
from services.common.credentials import Credential, CredentialError, Kind, Revocation
from services.common.mesh_identity import MeshIdentity
from services.common.records import PairingRequest

PAIRING_TTL = 600.0  # seconds a request waits for approval: the joiner's wait, and then it asks again
MAX_PENDING = 32  # requests kept at once (newest first): a flood of strangers cannot grow the state
MAX_ISSUED = 512  # paired credentials kept (a home mesh has a handful)
MAX_REVOKED = 1024


class AccessError(Exception):
    """An approval or revocation that cannot be done; the message says why (an admin reads it)."""


@dataclass(frozen=True)
class Access:
    pending: tuple[PairingRequest, ...] = ()
    issued: tuple[Credential, ...] = ()  # paired nodes' credentials
    revocations: tuple[Revocation, ...] = ()

    revoked_ids: frozenset[str] = field(init=False, repr=False)
    revoked_nodes: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "revoked_ids", frozenset(r.credential_id for r in self.revocations))
        object.__setattr__(self, "revoked_nodes", frozenset(r.node_id for r in self.revocations if r.node_id))


def authority_public(mesh: MeshIdentity) -> bytes:
    """The key every credential of this mesh must be signed by, as this node knows it."""
    return credentials.raw_public(credentials.authority_key(mesh.mesh_id, mesh.secret)) if mesh.member else mesh.authority


def merge(access: Access, pending: Iterable[PairingRequest], issued: Iterable[bytes], revocations: Iterable[bytes], mesh: MeshIdentity, now: float) -> Access:
    """`access` with what a peer told us added: only what verifies, within the bounds."""
    authority = authority_public(mesh)
    known = {r.credential_id: r for r in access.revocations}
    for data in revocations:
        revocation = _revocation(data)
        if revocation and credentials.valid_revocation(revocation, mesh.mesh_id, authority):
            known.setdefault(revocation.credential_id, revocation)
    have = {c.credential_id: c for c in access.issued}
    for data in issued:
        credential = _credential(data)
        if credential and credential.kind == Kind.PAIRED and credentials.refusal(credential, mesh.mesh_id, authority, (), credential.node_id) is None:
            have.setdefault(credential.credential_id, credential)
    merged = Access(access.pending, tuple(have.values())[-MAX_ISSUED:], tuple(sorted(known.values(), key=lambda r: r.revoked_at))[-MAX_REVOKED:])
    return _with_pending(merged, [*access.pending, *pending], now)


def request(access: Access, asked: PairingRequest, now: float) -> Access:
    """A joiner's request, as the member holding its connection registers it."""
    return _with_pending(access, [*access.pending, asked], now)


def approve(access: Access, code: str, mesh: MeshIdentity, now: float) -> tuple[Access, Credential]:
    """Issue the credential of the request showing `code`: the request leaves the pending list."""
    if not mesh.member:
        raise AccessError("only a member holding the mesh secret can approve (this node joined by pairing or a public token)")
    matches = [p for p in _live(access.pending, now) if p.code == code.strip()]
    if not matches:
        raise AccessError(f"no pairing request shows code {code.strip()!r} (see mesh-llm admin pending)")
    asked = max(matches, key=lambda p: p.requested_at)
    authority = credentials.authority_key(mesh.mesh_id, mesh.secret)
    credential = credentials.issue(authority, mesh.mesh_id, Kind.PAIRED, asked.node_id, asked.public_key, now)
    approved = Access(access.pending, (*access.issued, credential)[-MAX_ISSUED:], access.revocations)
    return _with_pending(approved, approved.pending, now), credential


def revoke(access: Access, node: str, mesh: MeshIdentity, names: dict[str, str], now: float) -> tuple[Access, list[Revocation]]:
    """Revoke a paired node's credentials (by node id, its start, or its name in `names`: node id ->
    name), or with "public" the public-join credential in use."""
    if not mesh.member:
        raise AccessError("only a member holding the mesh secret can revoke")
    authority = credentials.authority_key(mesh.mesh_id, mesh.secret)
    if node == "public":
        targets = [credentials.public_credential(mesh.mesh_id, mesh.secret, credentials.public_generation(access.revoked_ids))[0]]
    else:
        targets = [c for c in access.issued if c.credential_id not in access.revoked_ids and node in (c.node_id, names.get(c.node_id))]
        targets = targets or [c for c in access.issued if c.credential_id not in access.revoked_ids and c.node_id.startswith(node)]
    if not targets:
        raise AccessError(f"no paired node {node!r} holds a credential (mesh-llm admin paired lists them; 'public' revokes the public-join token)")
    made = [credentials.revoke(authority, c, now) for c in targets]
    return Access(access.pending, access.issued, (*access.revocations, *made)[-MAX_REVOKED:]), made


def public_token(access: Access, mesh: MeshIdentity, addresses: Iterable[str]) -> str:
    if not mesh.member:
        raise AccessError("only a member holding the mesh secret can hand out the public-join token")
    return credentials.current_public_token(mesh.mesh_id, mesh.secret, access.revoked_ids, list(addresses))


def _with_pending(access: Access, pending: Iterable[PairingRequest], now: float) -> Access:
    """Pending requests: live ones, one per joiner key (the newest), none already approved, the newest few."""
    approved = {c.public_key for c in access.issued}
    newest: dict[bytes, PairingRequest] = {}
    for asked in _live(pending, now):
        if asked.public_key not in approved and (asked.public_key not in newest or asked.requested_at > newest[asked.public_key].requested_at):
            newest[asked.public_key] = asked
    kept = sorted(newest.values(), key=lambda p: (-p.requested_at, p.code))[:MAX_PENDING]
    return replace(access, pending=tuple(kept))


def _live(pending: Iterable[PairingRequest], now: float) -> list[PairingRequest]:
    return [p for p in pending if now - PAIRING_TTL < p.requested_at <= now + 60 and len(p.code) <= 16 and len(p.public_key) <= 256]


def _credential(data: bytes) -> Credential | None:
    try:
        return credentials.decode(data)
    except CredentialError:
        return None


def _revocation(data: bytes) -> Revocation | None:
    try:
        return credentials.decode_revocation(data)
    except CredentialError:
        return None

"""Access state (gossip/access.py): pairing requests expire and are bounded, an approval issues a
credential for the request's key and clears the request, only a secret holder approves or revokes,
merges keep only what the mesh authority signed, and the public-join credential is the same on
every member until revoked, then moves to the next generation."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.common import credentials
from services.common.mesh_identity import MeshIdentity
from services.common.records import PairingRequest
from services.gossip import access
from services.gossip.access import Access, AccessError

MESH = MeshIdentity("mesh-a", b"s" * 32)
PAIRED_NODE = MeshIdentity("mesh-a", b"", 0, authority=credentials.raw_public(credentials.authority_key("mesh-a", b"s" * 32)))
NOW = 1_000_000.0


def asked(code: str = "123456", node: str = "node-j", at: float = NOW) -> PairingRequest:
    key = credentials.public_der(ec.generate_private_key(ec.SECP256R1()))
    return PairingRequest(code, node, "laptop", key, "node-a", at)


def test_an_approval_issues_a_credential_for_the_requests_key_and_clears_it() -> None:
    request = asked()
    state = access.request(Access(), request, NOW)
    state, credential = access.approve(state, "123456", MESH, NOW + 1)
    assert state.pending == () and state.issued == (credential,)
    assert credential.public_key == request.public_key and credential.node_id == "node-j"
    assert credentials.refusal(credential, "mesh-a", access.authority_public(MESH), (), "node-j") is None


@pytest.mark.parametrize(
    ("requests", "code", "reason"),
    [
        ([], "123456", "no pairing request shows code"),
        ([asked(at=NOW - access.PAIRING_TTL - 1)], "123456", "no pairing request shows code"),  # expired
        ([asked("654321")], "123456", "no pairing request shows code"),
    ],
)
def test_an_approval_without_a_live_request_of_that_code_is_refused(requests: list[PairingRequest], code: str, reason: str) -> None:
    state = Access(pending=tuple(requests))
    with pytest.raises(AccessError, match=reason):
        access.approve(state, code, MESH, NOW)


def test_a_node_without_the_secret_cannot_approve_revoke_or_hand_out_the_public_token() -> None:
    state = access.request(Access(), asked(), NOW)
    with pytest.raises(AccessError, match="only a member"):
        access.approve(state, "123456", PAIRED_NODE, NOW)
    with pytest.raises(AccessError, match="only a member"):
        access.revoke(state, "public", PAIRED_NODE, {}, NOW)
    with pytest.raises(AccessError, match="only a member"):
        access.public_token(state, PAIRED_NODE, ["10.0.0.1:9000"])


def test_pending_requests_are_bounded_one_per_key_newest_first() -> None:
    many = [asked(f"{i:06d}", f"node-{i}", NOW - i) for i in range(access.MAX_PENDING + 10)]
    state = access.merge(Access(), many, (), (), MESH, NOW)
    assert len(state.pending) == access.MAX_PENDING and state.pending[0].code == "000000"
    again = dataclasses.replace(many[0], code="999999", requested_at=NOW + 1)
    state = access.merge(state, [again], (), (), MESH, NOW + 1)
    assert [p.code for p in state.pending if p.public_key == again.public_key] == ["999999"]


def test_a_merge_keeps_only_what_the_mesh_authority_signed() -> None:
    state, credential = access.approve(access.request(Access(), asked(), NOW), "123456", MESH, NOW)
    _, [revocation] = access.revoke(state, "node-j", MESH, {}, NOW)
    other = MeshIdentity("mesh-a", b"x" * 32)
    forged, _ = access.approve(access.request(Access(), asked(node="node-f"), NOW), "123456", other, NOW)
    _, [forged_revocation] = access.revoke(forged, "node-f", other, {}, NOW)
    received = access.merge(
        Access(), (), [credential.encode(), forged.issued[0].encode(), b"garbage"], [revocation.encode(), forged_revocation.encode(), b"{}"], PAIRED_NODE, NOW
    )
    assert received.issued == (credential,) and received.revocations == (revocation,)
    assert received.revoked_nodes == {"node-j"} and received.revoked_ids == {credential.credential_id}


def test_revoke_finds_a_node_by_name_or_id_prefix() -> None:
    state, credential = access.approve(access.request(Access(), asked(node="0123abcd"), NOW), "123456", MESH, NOW)
    assert access.revoke(state, "laptop-1", MESH, {"0123abcd": "laptop-1"}, NOW)[1][0].credential_id == credential.credential_id
    assert access.revoke(state, "0123", MESH, {}, NOW)[1][0].node_id == "0123abcd"
    with pytest.raises(AccessError, match="no paired node"):
        access.revoke(state, "nobody", MESH, {}, NOW)


def test_the_public_token_is_the_same_on_every_member_until_revoked() -> None:
    first = access.public_token(Access(), MESH, ["10.0.0.1:9000"])
    assert first == access.public_token(Access(), MeshIdentity("mesh-a", b"s" * 32, 3), ["10.0.0.1:9000"])
    token = credentials.decode_token(first)
    assert token.credential.credential_id == "public-1" and MESH.secret.hex() not in first
    revoked, _ = access.revoke(Access(), "public", MESH, {}, NOW)
    second = credentials.decode_token(access.public_token(revoked, MESH, ["10.0.0.1:9000"]))
    assert second.credential.credential_id == "public-2" and second.private_key != token.private_key
    assert credentials.refusal(token.credential, "mesh-a", access.authority_public(MESH), revoked.revoked_ids, "anyone") is not None

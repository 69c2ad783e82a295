"""Credentials: issued by the mesh's authority (derived from its secret), checked by anyone who knows
the authority's public key; revocations self-authenticating; the public-join token round-trips and
is refused when it is not ours."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.common import credentials
from services.common.credentials import Credential, CredentialError, Kind

MESH, SECRET = "mesh-a", b"s" * 32
AUTHORITY = credentials.authority_key(MESH, SECRET)
AUTHORITY_PUBLIC = credentials.raw_public(AUTHORITY)
NODE_KEY = ec.generate_private_key(ec.SECP256R1())


def paired(node_id: str = "node-b") -> Credential:
    return credentials.issue(AUTHORITY, MESH, Kind.PAIRED, node_id, credentials.public_der(NODE_KEY), now=1000)


def test_every_member_derives_the_same_authority_and_a_rotated_secret_another() -> None:
    assert credentials.raw_public(credentials.authority_key(MESH, SECRET)) == AUTHORITY_PUBLIC
    assert credentials.raw_public(credentials.authority_key(MESH, b"t" * 32)) != AUTHORITY_PUBLIC
    assert credentials.raw_public(credentials.authority_key("mesh-b", SECRET)) != AUTHORITY_PUBLIC


def test_an_issued_credential_admits_its_node_after_a_round_trip() -> None:
    credential = credentials.decode(paired().encode())
    assert credentials.refusal(credential, MESH, AUTHORITY_PUBLIC, revoked=(), node_id="node-b") is None


@pytest.mark.parametrize(
    ("change", "mesh", "node", "revoked", "reason"),
    [
        ({}, "mesh-b", "node-b", (), "another mesh"),
        ({"kind": Kind.MEMBER}, MESH, "node-b", (), "not issued by this mesh"),  # a paired node promoting itself
        ({"node_id": "node-c"}, MESH, "node-c", (), "not issued by this mesh"),
        ({}, MESH, "node-c", (), "issued to node node-b"),  # someone else's credential
        ({"issued_at": 2000}, MESH, "node-b", (), "not issued by this mesh"),
        ({}, MESH, "node-b", ("REVOKED",), "was revoked"),
    ],
)
def test_a_credential_is_refused_for_its_reason(change: dict[str, object], mesh: str, node: str, revoked: tuple[str, ...], reason: str) -> None:
    credential = paired()
    revoked = tuple(credential.credential_id if r == "REVOKED" else r for r in revoked)
    tampered = dataclasses.replace(credential, **change)  # pyright: ignore[reportArgumentType]
    refusal = credentials.refusal(tampered, mesh, AUTHORITY_PUBLIC, revoked, node)
    assert refusal is not None and reason in refusal


def test_a_credential_signed_by_another_mesh_secret_is_refused() -> None:
    forged = credentials.issue(credentials.authority_key(MESH, b"x" * 32), MESH, Kind.MEMBER, "node-b", credentials.public_der(NODE_KEY), now=0)
    assert "not issued by this mesh" in (credentials.refusal(forged, MESH, AUTHORITY_PUBLIC, (), "node-b") or "")


def test_a_public_credential_admits_any_node() -> None:
    key = credentials.new_public_key()
    public = credentials.issue(AUTHORITY, MESH, Kind.PUBLIC, "", credentials.public_der(key), now=0)
    assert credentials.refusal(public, MESH, AUTHORITY_PUBLIC, (), "whoever") is None


@pytest.mark.parametrize("key", [NODE_KEY, credentials.new_public_key()], ids=["ecdsa", "ed25519"])
def test_a_transcript_signature_is_bound_to_its_side_and_transcript(key: credentials.PrivateKey) -> None:
    public = credentials.public_der(key)
    signature = credentials.sign(key, "client", b"transcript")
    assert credentials.signed(public, "client", b"transcript", signature)
    assert not credentials.signed(public, "server", b"transcript", signature)
    assert not credentials.signed(public, "client", b"transcript!", signature)
    assert not credentials.signed(b"not a key", "client", b"transcript", signature)


def test_revocations_verify_only_under_the_mesh_authority() -> None:
    revocation = credentials.decode_revocation(credentials.revoke(AUTHORITY, paired(), now=5).encode())
    assert credentials.valid_revocation(revocation, MESH, AUTHORITY_PUBLIC)
    assert revocation.node_id == "node-b"
    assert not credentials.valid_revocation(dataclasses.replace(revocation, credential_id="other"), MESH, AUTHORITY_PUBLIC)
    forged = credentials.revoke(credentials.authority_key(MESH, b"x" * 32), paired(), now=5)
    assert not credentials.valid_revocation(forged, MESH, AUTHORITY_PUBLIC)


def test_the_public_token_round_trips_within_a_listing_bound_and_holds_no_secret() -> None:
    key = credentials.new_public_key()
    public = credentials.issue(AUTHORITY, MESH, Kind.PUBLIC, "", credentials.public_der(key), now=0)
    text = credentials.public_token(public, key, ["203.0.113.7:9338"]).encode()
    assert len(text) <= credentials.MAX_TOKEN_CHARS
    assert SECRET.hex() not in text
    token = credentials.decode_token(text)
    assert token.credential == public and token.addresses == ("203.0.113.7:9338",)
    signature = credentials.sign(token.signing_key(), "client", b"t")
    assert credentials.signed(public.public_key, "client", b"t", signature)


@pytest.mark.parametrize("text", ["", "mlpub1_", "mlpub1_!!!", "mlpub1_" + "A" * 2000, "mesh-llm-invite", "mlpub1_e30"])
def test_a_bad_token_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(CredentialError) as refused:
        credentials.decode_token(text)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("data", [b"", b"[]", b"{}", b'{"mesh_id": 1}', b"\xff", b"{" * 3000])
def test_bad_credential_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(CredentialError):
        credentials.decode(data)

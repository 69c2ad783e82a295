"""Tokens and credentials as they arrive (pasted by a user, in a listing, inside a peer's admission
or gossip): whatever the bytes, decoding gives back the value encoded, a well-typed value, or the
module's own error (TokenError, CredentialError), never another exception."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import example, given
from hypothesis import strategies as st

from services.common import credentials, invite
from services.common.credentials import Credential, CredentialError, Kind, PublicToken, Revocation
from services.common.invite import InviteToken, TokenError
from tests.unit.fuzz.inputs import JSON_VALUES, deeply_nested, fuzz, mutated

pytestmark = pytest.mark.timeout(120)

MESH, SECRET = "7f3a9c01d2e4b5a6", b"s" * 32
AUTHORITY = credentials.authority_key(MESH, SECRET)
NODE_KEY = credentials.public_der(ec.generate_private_key(ec.SECP256R1()))
CREDENTIAL = credentials.issue(AUTHORITY, MESH, Kind.PAIRED, "node-b", NODE_KEY, now=1_700_000_000)
REVOCATION = credentials.revoke(AUTHORITY, CREDENTIAL, now=1_700_000_100)
PUBLIC_TOKEN = credentials.current_public_token(MESH, SECRET, (), ["10.0.0.2:7000", "[fe80::1]:7000"])
TOKEN = InviteToken(MESH, SECRET, ("10.0.0.2:7000", "[fe80::1]:7000"), "ab" * 32)

HOSTS = st.sampled_from(["10.0.0.2", "host.local", "[::1]", "[fe80::1%eth0]"])
ADDRESSES = st.builds(lambda host, port: f"{host}:{port}", HOSTS, st.integers(1, 65535))


def checksummed(body: bytes) -> str:
    """An invite token of any body, with the checksum right: what gets past the first check."""
    return invite.PREFIX + base64.urlsafe_b64encode(body + hashlib.sha256(body).digest()[: invite.CHECKSUM_BYTES]).decode().rstrip("=")


def assert_invite(token: InviteToken) -> None:
    """What a joiner relies on in a token decode accepted."""
    assert isinstance(token.mesh_id, str) and isinstance(token.fingerprint, str)
    assert len(token.secret) == invite.SECRET_BYTES and token.bootstrap and all(isinstance(a, str) for a in token.bootstrap)


def decoded_invite(text: str) -> None:
    try:
        token = invite.decode(text)
    except TokenError:
        return
    assert_invite(token)


@fuzz(150)
@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=8), st.binary(min_size=32, max_size=32), st.lists(ADDRESSES, min_size=1, max_size=4))
def test_invite_tokens_round_trip(mesh_id: str, secret: bytes, bootstrap: list[str]) -> None:
    token = InviteToken(mesh_id, secret, tuple(bootstrap), "cd" * 32)
    assert invite.decode(token.encode()) == token


@fuzz(200)
@given(st.text(max_size=200) | st.builds(lambda text: invite.PREFIX + text, st.text(max_size=200)))
def test_any_text_is_a_token_or_a_token_error(text: str) -> None:
    decoded_invite(text)


@fuzz(200)
@given(mutated(TOKEN.encode().encode()))
def test_an_edited_token_is_refused_or_still_whole(data: bytes) -> None:
    decoded_invite(data.decode("utf-8", "replace"))


@fuzz(200)
@given(JSON_VALUES | st.fixed_dictionaries({"m": JSON_VALUES, "s": st.just(SECRET.hex()) | JSON_VALUES, "b": st.just(["h:1"]) | JSON_VALUES, "f": JSON_VALUES}))
@example({"m": 0, "s": SECRET.hex(), "b": ["h:1"], "f": "ab"})  # a mesh id that is not text
@example(deeply_nested())
def test_any_checksummed_body_is_a_token_or_a_token_error(body: object) -> None:
    decoded_invite(checksummed(body if isinstance(body, bytes) else json.dumps(body).encode()))


def decoded_credential(data: bytes) -> None:
    try:
        credential = credentials.decode(data)
    except CredentialError:
        return
    assert isinstance(credential, Credential) and isinstance(credential.issued_at, int) and isinstance(credential.kind, Kind)
    credentials.refusal(credential, MESH, credentials.raw_public(AUTHORITY), (), "node-b")  # checking it never raises either


def decoded_revocation(data: bytes) -> None:
    try:
        revocation = credentials.decode_revocation(data)
    except CredentialError:
        return
    assert isinstance(revocation, Revocation) and isinstance(revocation.revoked_at, int)
    credentials.valid_revocation(revocation, MESH, credentials.raw_public(AUTHORITY))


def test_credentials_and_revocations_round_trip() -> None:
    assert credentials.decode(CREDENTIAL.encode()) == CREDENTIAL
    assert credentials.decode_revocation(REVOCATION.encode()) == REVOCATION
    token = credentials.decode_token(PUBLIC_TOKEN)
    assert token.encode() == PUBLIC_TOKEN and token.credential.kind == Kind.PUBLIC


@fuzz(200)
@given(st.binary(max_size=300) | mutated(CREDENTIAL.encode()) | mutated(REVOCATION.encode()))
def test_any_bytes_are_a_credential_or_a_credential_error(data: bytes) -> None:
    decoded_credential(data)
    decoded_revocation(data)


def test_json_nested_past_the_recursion_limit_within_the_size_bound_is_refused() -> None:
    """Run plainly: hypothesis raises the recursion limit while its examples run, and 2 KiB of
    nested arrays pass the interpreter's default limit only."""
    with pytest.raises(CredentialError):
        credentials.decode(b"[" * credentials.MAX_ENCODED_BYTES)
    with pytest.raises(CredentialError):
        credentials.decode_revocation(b"[" * credentials.MAX_ENCODED_BYTES)


def fields_with(encoded: bytes, key: str, value: object) -> bytes:
    fields = json.loads(encoded)
    fields[key] = value
    return json.dumps(fields).encode()


CREDENTIAL_KEYS = st.sampled_from(sorted(json.loads(CREDENTIAL.encode())))
REVOCATION_KEYS = st.sampled_from(sorted(json.loads(REVOCATION.encode())))


@fuzz(200)
@given(CREDENTIAL_KEYS, REVOCATION_KEYS, JSON_VALUES)
@example("issued_at", "revoked_at", float("inf"))  # JSON's 1e999: int() of it overflows
@example("issued_at", "revoked_at", float("nan"))
def test_a_field_of_any_json_is_refused_or_well_typed(credential_key: str, revocation_key: str, value: object) -> None:
    decoded_credential(fields_with(CREDENTIAL.encode(), credential_key, value))
    decoded_revocation(fields_with(REVOCATION.encode(), revocation_key, value))


def decoded_public_token(text: str) -> None:
    try:
        token = credentials.decode_token(text)
    except CredentialError:
        return
    assert isinstance(token, PublicToken) and token.credential.kind == Kind.PUBLIC and token.addresses
    token.signing_key()


@fuzz(200)
@given(st.text(max_size=200) | st.builds(lambda text: credentials.TOKEN_PREFIX + text, st.text(max_size=300)) | mutated(PUBLIC_TOKEN.encode()))
def test_any_text_is_a_public_token_or_a_credential_error(text: str | bytes) -> None:
    decoded_public_token(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)


def public_token_of(fields: dict[str, object]) -> str:
    return credentials.TOKEN_PREFIX + base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


PUBLIC_FIELDS = json.loads(base64.urlsafe_b64decode(PUBLIC_TOKEN.removeprefix(credentials.TOKEN_PREFIX) + "=="))


@fuzz(200)
@given(st.sampled_from(sorted(PUBLIC_FIELDS)), JSON_VALUES)
def test_a_public_token_field_of_any_json_is_refused_or_well_typed(key: str, value: object) -> None:
    decoded_public_token(public_token_of({**PUBLIC_FIELDS, key: value}))


# A P-256 key's point under secp112r1's OID: well-formed DER naming a curve cryptography does not support.
UNSUPPORTED_CURVE = bytes.fromhex("3056301006072a8648ce3d020106052b81040006") + NODE_KEY[-68:]


@fuzz(200)
@given(st.just(NODE_KEY) | mutated(NODE_KEY) | st.binary(max_size=100), st.binary(max_size=72))
@example(UNSUPPORTED_CURVE, b"")
def test_a_proof_by_any_key_bytes_is_checked_true_or_false(public_key: bytes, signature: bytes) -> None:
    assert credentials.signed(public_key, "client", b"transcript", signature) in (True, False)

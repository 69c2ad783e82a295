"""Mesh credentials: who may be admitted, without the mesh secret leaving the members who hold it.

A credential is a statement signed by the mesh's authority key: "the holder of key K is admitted to
mesh M as KIND, under credential id I (for node N)". The authority key is derived from the mesh
secret, so every member can issue credentials (a member issues its own at start) and rotate-key
retires every credential issued before; anyone who knows the authority's public key verifies them,
so paired nodes, which never hold the secret, admit each other. A holder proves a credential is its
own by signing the admission transcript with K's private key: for a member or a paired node, its
certificate's key (node-key.pem); for the public-join credential, a key shared by every public
joiner and carried in the public-join token, so that one revocation retires them all.

Revocations are signed by the authority too: self-authenticating, spread by gossip as a union.

Pure: encoding, signing and checking only; keys come in as objects, nothing here reads a file or
touches the network. Must not know about protobufs or admission's exchange (peers/admission.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

MAX_ENCODED_BYTES = 2048  # a credential is ~400 bytes of JSON; anything far larger is not ours
MAX_TOKEN_CHARS = 1024  # a listing's bound on its join token (discovery/listing.py)
TOKEN_PREFIX = "mlpub1_"

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class Kind(StrEnum):
    """What a credential admits its holder as."""

    MEMBER = "member"  # holds the mesh secret; issues its own credential from it
    PAIRED = "paired"  # approved by a member (pairing); never given the secret; revocable
    PUBLIC = "public"  # anyone with the public-join token of a published mesh; revocable as one


class CredentialError(ValueError):
    """Bytes that are not a credential, a revocation or a token of ours; the message says why."""


@dataclass(frozen=True)
class Credential:
    mesh_id: str
    kind: Kind
    credential_id: str  # what a revocation names
    node_id: str  # the node it was issued to; "" for the public credential (any node)
    public_key: bytes  # DER SubjectPublicKeyInfo of the holder's key
    issued_at: int  # Unix seconds
    authority: bytes  # the issuing authority's raw Ed25519 public key (32 bytes)
    signature: bytes = b""

    def encode(self) -> bytes:
        return _json({**_fields(self), "signature": self.signature.hex()})


@dataclass(frozen=True)
class Revocation:
    mesh_id: str
    credential_id: str
    node_id: str  # the node the credential was issued to ("" for a public credential): dropped from the mesh
    revoked_at: int
    authority: bytes
    signature: bytes = b""

    def encode(self) -> bytes:
        return _json({**_revocation_fields(self), "signature": self.signature.hex()})


@dataclass(frozen=True)
class PublicToken:
    """What a public listing hands anyone: the public credential with its key, and where to dial."""

    credential: Credential
    private_key: bytes  # raw Ed25519 private key shared by every public joiner
    addresses: tuple[str, ...]

    def encode(self) -> str:
        body = _json({"c": self.credential.encode().decode(), "k": self.private_key.hex(), "a": list(self.addresses)})
        return TOKEN_PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")

    def signing_key(self) -> ed25519.Ed25519PrivateKey:
        return ed25519.Ed25519PrivateKey.from_private_bytes(self.private_key)


# --- the authority ---------------------------------------------------------------------------


def authority_key(mesh_id: str, secret: bytes) -> ed25519.Ed25519PrivateKey:
    """The mesh's signing key, the same on every member that holds this secret."""
    seed = hmac.new(secret, b"mesh-llm authority\0" + mesh_id.encode(), hashlib.sha256).digest()
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def raw_public(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def issue(authority: ed25519.Ed25519PrivateKey, mesh_id: str, kind: Kind, node_id: str, public_key: bytes, now: float, credential_id: str = "") -> Credential:
    """A credential for `public_key`, signed by `authority`; a fresh random id unless one is given."""
    unsigned = Credential(mesh_id, kind, credential_id or secrets.token_hex(8), node_id, public_key, int(now), raw_public(authority))
    return replace(unsigned, signature=authority.sign(_json(_fields(unsigned))))


def revoke(authority: ed25519.Ed25519PrivateKey, credential: Credential, now: float) -> Revocation:
    unsigned = Revocation(credential.mesh_id, credential.credential_id, credential.node_id, int(now), raw_public(authority))
    return replace(unsigned, signature=authority.sign(_json(_revocation_fields(unsigned))))


def new_public_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def raw_private(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


PUBLIC_PREFIX = "public-"


def public_generation(revoked: Collection[str]) -> int:
    """The public-join credential in use: the first generation not revoked."""
    generation = 1
    while f"{PUBLIC_PREFIX}{generation}" in revoked:
        generation += 1
    return generation


def public_credential(mesh_id: str, secret: bytes, generation: int) -> tuple[Credential, ed25519.Ed25519PrivateKey]:
    """The public-join credential of a generation and its shared key, derived from the secret: the
    same on every member (Ed25519 signatures are deterministic), so any member may publish it."""
    seed = hmac.new(secret, f"mesh-llm public-join\0{mesh_id}\0{generation}".encode(), hashlib.sha256).digest()
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    credential = issue(authority_key(mesh_id, secret), mesh_id, Kind.PUBLIC, "", public_der(key), 0, f"{PUBLIC_PREFIX}{generation}")
    return credential, key


def current_public_token(mesh_id: str, secret: bytes, revoked: Collection[str], addresses: Sequence[str]) -> str:
    """The public-join token a listing carries now: the first generation not revoked."""
    credential, key = public_credential(mesh_id, secret, public_generation(revoked))
    return public_token(credential, key, addresses).encode()


# --- checking ---------------------------------------------------------------------------------


def refusal(credential: Credential, mesh_id: str, authority: bytes, revoked: Collection[str], node_id: str) -> str | None:
    """Why `credential`, presented by `node_id`, does not admit it to `mesh_id` under `authority`;
    None when it does. The reasons are what both sides log and the refused side is told."""
    if credential.mesh_id != mesh_id:
        return f"credential for another mesh ({credential.mesh_id!r})"
    if credential.authority != authority or not _signed_by(authority, _json(_fields(credential)), credential.signature):
        return "credential not issued by this mesh (an old or forged token, or the mesh key was rotated)"
    if credential.credential_id in revoked:
        return f"credential {credential.credential_id} was revoked"
    if credential.kind != Kind.PUBLIC and credential.node_id != node_id:
        return f"credential issued to node {credential.node_id}, presented by {node_id}"
    return None


def valid_revocation(revocation: Revocation, mesh_id: str, authority: bytes) -> bool:
    """Whether `revocation` was signed by this mesh's authority (anything else is dropped on receipt)."""
    fields = _json(_revocation_fields(revocation))
    return revocation.mesh_id == mesh_id and revocation.authority == authority and _signed_by(authority, fields, revocation.signature)


def sign(key: PrivateKey, side: str, transcript: bytes) -> bytes:
    """A holder's proof that it owns its credential's key, bound to one side of one handshake."""
    data = side.encode() + b"\0" + transcript
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def signed(public_key: bytes, side: str, transcript: bytes, signature: bytes) -> bool:
    data = side.encode() + b"\0" + transcript
    try:
        key = serialization.load_der_public_key(public_key)
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):  # UnsupportedAlgorithm: a key of a curve cryptography lacks
        return False
    return True


# --- decoding (untrusted bytes) -----------------------------------------------------------------


def decode(data: bytes) -> Credential:
    fields = _object(data)
    try:
        return Credential(
            _text(fields["mesh_id"]),
            Kind(fields["kind"]),
            _text(fields["credential_id"]),
            _text(fields["node_id"]),
            _hex(fields["public_key"]),
            int(fields["issued_at"]),
            _hex(fields["authority"]),
            _hex(fields["signature"]),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as bad:  # OverflowError: JSON's 1e999 is an infinite float
        raise CredentialError(f"not a credential: {bad}") from None


def decode_revocation(data: bytes) -> Revocation:
    fields = _object(data)
    try:
        return Revocation(
            _text(fields["mesh_id"]),
            _text(fields["credential_id"]),
            _text(fields["node_id"]),
            int(fields["revoked_at"]),
            _hex(fields["authority"]),
            _hex(fields["signature"]),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as bad:
        raise CredentialError(f"not a revocation: {bad}") from None


def decode_token(text: str) -> PublicToken:
    """A public-join token as read from a listing or typed by a user."""
    text = text.strip()
    if not text.startswith(TOKEN_PREFIX) or len(text) > MAX_TOKEN_CHARS:
        raise CredentialError("not a mesh-llm public-join token")
    body = text.removeprefix(TOKEN_PREFIX)
    try:
        fields = _object(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        credential = decode(_text(fields["c"], MAX_ENCODED_BYTES).encode())
        key = _hex(fields["k"])
        ed25519.Ed25519PrivateKey.from_private_bytes(key)
        addresses = tuple(_text(a) for a in fields["a"])
    except (binascii.Error, KeyError, TypeError, ValueError) as bad:
        raise CredentialError(f"not a mesh-llm public-join token: {bad}") from None
    if credential.kind != Kind.PUBLIC or not addresses:
        raise CredentialError("not a mesh-llm public-join token: no public credential or no address")
    return PublicToken(credential, key, addresses)


def public_token(credential: Credential, key: ed25519.Ed25519PrivateKey, addresses: Sequence[str]) -> PublicToken:
    return PublicToken(credential, raw_private(key), tuple(addresses))


# --- helpers ----------------------------------------------------------------------------------


def _fields(credential: Credential) -> dict[str, Any]:
    return {
        "mesh_id": credential.mesh_id,
        "kind": str(credential.kind),
        "credential_id": credential.credential_id,
        "node_id": credential.node_id,
        "public_key": credential.public_key.hex(),
        "issued_at": credential.issued_at,
        "authority": credential.authority.hex(),
    }


def _revocation_fields(revocation: Revocation) -> dict[str, Any]:
    return {
        "credential_id": revocation.credential_id,
        "mesh_id": revocation.mesh_id,
        "node_id": revocation.node_id,
        "revoked_at": revocation.revoked_at,
        "authority": revocation.authority.hex(),
    }


def _json(fields: dict[str, Any]) -> bytes:
    """Canonical bytes: what is signed is what any verifier rebuilds from the same fields."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _object(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_ENCODED_BYTES:
        raise CredentialError(f"{len(data)} bytes is too large for a credential")
    try:
        fields = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as bad:  # RecursionError: nested arrays fit in the bound
        raise CredentialError(f"not JSON: {bad}") from None
    if not isinstance(fields, dict):
        raise CredentialError("not a JSON object")
    return fields  # pyright: ignore[reportUnknownVariableType]


def _text(value: object, limit: int = 256) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise TypeError("expected a short string")
    return value


def _hex(value: object) -> bytes:
    return bytes.fromhex(_text(value))


def _signed_by(authority: bytes, data: bytes, signature: bytes) -> bool:
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(authority).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True

"""Invite tokens: what a node needs to join a mesh, as one URL-safe string.

A token carries the mesh id, the 32-byte mesh secret, bootstrap addresses (every address the
issuer may be reached at, IPv6 in brackets: a joiner tries them all at once) and the issuer's
certificate fingerprint, with a checksum so that a truncated or edited token is caught before
anything starts. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass

from services.common import addresses

PREFIX = "mesh1-"
SECRET_BYTES = 32
CHECKSUM_BYTES = 4


class TokenError(Exception):
    """A token that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class InviteToken:
    mesh_id: str
    secret: bytes
    bootstrap: tuple[str, ...]
    fingerprint: str

    def encode(self) -> str:
        body = json.dumps(
            {"m": self.mesh_id, "s": self.secret.hex(), "b": list(self.bootstrap), "f": self.fingerprint},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        checksum = hashlib.sha256(body).digest()[:CHECKSUM_BYTES]
        return PREFIX + base64.urlsafe_b64encode(body + checksum).decode().rstrip("=")


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def new_mesh_id() -> str:
    return secrets.token_hex(8)


def decode(text: str) -> InviteToken:
    """The token's contents, or TokenError saying what is wrong with it."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise TokenError("not a mesh-llm invite token (it should start with 'mesh1-')")
    raw = _unbase64(text[len(PREFIX) :])
    body, checksum = raw[:-CHECKSUM_BYTES], raw[-CHECKSUM_BYTES:]
    if len(raw) <= CHECKSUM_BYTES or hashlib.sha256(body).digest()[:CHECKSUM_BYTES] != checksum:
        raise TokenError("invite token is truncated or altered (checksum mismatch): copy it again")
    try:
        fields = json.loads(body)
        token = InviteToken(_text(fields["m"]), bytes.fromhex(fields["s"]), tuple(fields["b"]), _text(fields["f"]))
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: a body of deeply nested arrays
        raise TokenError("invite token is malformed") from None
    if len(token.secret) != SECRET_BYTES or not token.bootstrap or not all(_is_address(a) for a in token.bootstrap):
        raise TokenError("invite token is malformed (secret or addresses)")
    return token


def _text(value: object) -> str:
    """A field that must be text (the mesh id, the fingerprint): a checksum proves no type."""
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _unbase64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise TokenError("invite token is truncated or not valid base64: copy it again") from None


def _is_address(address: object) -> bool:
    """'host:port' or '[ipv6]:port', as addresses.split reads them when a joiner dials."""
    if not isinstance(address, str):
        return False
    try:
        addresses.split(address)
    except ValueError:
        return False
    return True

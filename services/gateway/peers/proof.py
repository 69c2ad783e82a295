"""Proofs of the mesh secret: HMACs bound to both certificates' fingerprints and fresh nonces.

Pure: computing and checking proofs only. The exchange that carries them on a new connection
is admission.py's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

NONCE_BYTES = 16

# Which side of the handshake a proof comes from: a proof is never valid for the other side (no
# reflection). Not a node's Role (records.py): any node is "client" when it dials, "server" when dialled.
Side = Literal["client", "server"]


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def transcript(mesh_id: str, client_fingerprint: str, server_fingerprint: str, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """What both proofs are bound to: the mesh, both certificates and both sides' fresh nonces."""
    parts = [mesh_id.encode(), client_fingerprint.encode(), server_fingerprint.encode(), client_nonce, server_nonce]
    return b"\0".join(parts)


def prove(secret: bytes, side: Side, transcript_bytes: bytes) -> bytes:
    return hmac.new(secret, side.encode() + b"\0" + transcript_bytes, hashlib.sha256).digest()


def check(secret: bytes, side: Side, transcript_bytes: bytes, given: bytes) -> bool:
    return hmac.compare_digest(prove(secret, side, transcript_bytes), given)

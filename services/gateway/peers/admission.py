"""Admission: both sides prove they hold the mesh secret, bound to both certificates and fresh nonces.

Pure: HMAC computations and checks only. The order on a new connection (client = the side
that connected):
  client -> server  Hello(mesh_id, client nonce, client fingerprint, node id, address)
  server -> client  Challenge(server nonce)
  client -> server  Proof(HMAC(secret, "client" | transcript))
  server -> client  Welcome(HMAC(secret, "server" | transcript)) or Refusal(reason)
A stranger without the secret learns nothing but the refusal.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

NONCE_BYTES = 16


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def transcript(mesh_id: str, client_fingerprint: str, server_fingerprint: str, client_nonce: bytes, server_nonce: bytes) -> bytes:
    parts = [mesh_id.encode(), client_fingerprint.encode(), server_fingerprint.encode(), client_nonce, server_nonce]
    return b"\0".join(parts)


def proof(secret: bytes, role: str, transcript_bytes: bytes) -> bytes:
    return hmac.new(secret, role.encode() + b"\0" + transcript_bytes, hashlib.sha256).digest()


def check(secret: bytes, role: str, transcript_bytes: bytes, given: bytes) -> bool:
    return hmac.compare_digest(proof(secret, role, transcript_bytes), given)

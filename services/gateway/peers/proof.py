"""What admission's signatures are bound to: both certificates' fingerprints and fresh nonces.

Pure. The signatures are credentials.py's; the exchange that carries them is admission.py's.
"""

from __future__ import annotations

import secrets

NONCE_BYTES = 16


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def transcript(mesh_id: str, client_fingerprint: str, server_fingerprint: str, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """What both signatures are bound to: the mesh, both certificates and both sides' fresh nonces."""
    parts = [mesh_id.encode(), client_fingerprint.encode(), server_fingerprint.encode(), client_nonce, server_nonce]
    return b"\0".join(parts)

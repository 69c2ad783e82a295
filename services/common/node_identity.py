"""The node's own identity: a persistent key pair and self-signed certificate under its home.

Owns creating and loading <home>/node-key.pem and node-cert.pem, and the certificate's fingerprint.
The gateway's QUIC endpoint presents the certificate (TLS 1.3); invite tokens carry the fingerprint
(the CLI's init and rotate-key). Which mesh the node belongs to is mesh_identity.py's; proving it
to a peer is the gateway's (peers/admission.py). Nothing here touches the network.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class NodeIdentity:
    certificate_path: Path
    key_path: Path
    fingerprint: str


def fingerprint_of(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_or_create(home: Path) -> NodeIdentity:
    """The identity stored under `home`, made on first use (the key file is private to us)."""
    certificate_path, key_path = home / "node-cert.pem", home / "node-key.pem"
    if not (certificate_path.exists() and key_path.exists()):
        _create(certificate_path, key_path)
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    return NodeIdentity(certificate_path, key_path, fingerprint_of(certificate))


def private_key(identity: NodeIdentity) -> ec.EllipticCurvePrivateKey:
    """The certificate's key: what this node's credential binds and its admission signatures use."""
    key = serialization.load_pem_private_key(identity.key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{identity.key_path} does not hold an EC key")
    return key


def _create(certificate_path: Path, key_path: Path) -> None:
    certificate_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mesh-llm node")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

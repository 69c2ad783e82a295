"""The mesh this node belongs to: id and secret, kept in <home>/mesh.json (private to us).

Owns the file; it is written when a node starts or joins a mesh (the CLI's --join, gossip's
MESH_GOSSIP_JOIN), when a new secret arrives, and by `python -m services.common.mesh_identity` (one
mesh for several homes, compose's nodes). Must not know about tokens' text form (invite.py) or the network.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from services.common.invite import InviteToken, new_mesh_id, new_secret


@dataclass(frozen=True)
class MeshIdentity:
    """A member holds the secret; a paired or public node holds a credential instead (credentials.py)."""

    mesh_id: str
    secret: bytes
    secret_version: int = 1
    credential: bytes = b""  # without the secret: the encoded credential that admits this node
    signing_key: bytes = b""  # the public credential's shared key (raw Ed25519); "" when paired
    authority: bytes = b""  # without the secret: the mesh authority's public key (checks peers)
    addresses: tuple[str, ...] = ()  # without the secret: members to dial on a later start (no token to name them)

    @property
    def member(self) -> bool:
        return bool(self.secret)


def path_in(home: Path) -> Path:
    return home / "mesh.json"


def load(home: Path) -> MeshIdentity | None:
    try:
        fields = json.loads(path_in(home).read_text())
    except FileNotFoundError:
        return None
    extra = {name: bytes.fromhex(fields.get(name, "")) for name in ("credential", "signing_key", "authority")}
    addresses = tuple(str(a) for a in fields.get("addresses", []))
    return MeshIdentity(fields["mesh_id"], bytes.fromhex(fields["secret"]), int(fields["secret_version"]), **extra, addresses=addresses)


def save(home: Path, identity: MeshIdentity) -> None:
    home.mkdir(parents=True, exist_ok=True)
    fields = {"mesh_id": identity.mesh_id, "secret": identity.secret.hex(), "secret_version": identity.secret_version}
    fields |= {name: getattr(identity, name).hex() for name in ("credential", "signing_key", "authority")}
    text = json.dumps(fields | {"addresses": list(identity.addresses)})
    partial = path_in(home).with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    partial.replace(path_in(home))


def load_or_create(home: Path) -> MeshIdentity:
    """This node's mesh, or a new mesh of its own on first start."""
    identity = load(home)
    if identity is None:
        identity = MeshIdentity(new_mesh_id(), new_secret())
        save(home, identity)
    return identity


def mesh_of(home: Path, token: InviteToken | None) -> MeshIdentity:
    """The mesh this node belongs to: the token's when joining, else the one stored (or a new one)."""
    if token is None:
        return load_or_create(home)
    stored = load(home)
    if stored and (stored.mesh_id, stored.secret) == (token.mesh_id, token.secret):
        return stored
    joined = MeshIdentity(token.mesh_id, token.secret)
    save(home, joined)
    return joined


def share(first: Path, others: list[Path]) -> MeshIdentity:
    """One mesh for several nodes: the first home's (a new one if it has none) stored in every other,
    so that a node of theirs, seeded with the first's address, joins it (compose.yaml's second node)."""
    identity = load_or_create(first)
    for home in others:
        if load(home) != identity:
            save(home, identity)
    return identity


if __name__ == "__main__":
    # python -m services.common.mesh_identity FIRST_HOME OTHER_HOME...: what compose's mesh service runs.
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m services.common.mesh_identity FIRST_HOME OTHER_HOME...")
    mesh = share(Path(sys.argv[1]), [Path(home) for home in sys.argv[2:]])
    print(f"mesh {mesh.mesh_id} shared by {', '.join(sys.argv[1:])}")

"""The mesh this node belongs to: id and secret, kept in <home>/mesh.json (private to us).

Owns the file; the CLI writes it when a node starts or joins a mesh, gossip when a new secret
arrives. Must not know about tokens' text form (invite.py) or the network.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from services.common.invite import new_mesh_id, new_secret


@dataclass(frozen=True)
class MeshIdentity:
    mesh_id: str
    secret: bytes
    secret_version: int = 1


def path_in(home: Path) -> Path:
    return home / "mesh.json"


def load(home: Path) -> MeshIdentity | None:
    try:
        fields = json.loads(path_in(home).read_text())
    except FileNotFoundError:
        return None
    return MeshIdentity(fields["mesh_id"], bytes.fromhex(fields["secret"]), int(fields["secret_version"]))


def save(home: Path, identity: MeshIdentity) -> None:
    home.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"mesh_id": identity.mesh_id, "secret": identity.secret.hex(), "secret_version": identity.secret_version})
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

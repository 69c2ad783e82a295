"""`mesh-llm --join-nearby [MESH]`: find a mesh on the LAN, ask to join it, show the pairing code
and wait for a member to approve; the credential it issues is stored as this node's mesh identity.

Owns choosing the mesh and node to ask, and the lines the user reads meanwhile; the exchange is the
gateway's peers/pairing.py, the LAN browse discovery/lan.py's. Runs before the node's services start.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.cli.flags import UsageError
from services.common import mesh_identity, node_identity
from services.common.mesh_identity import MeshIdentity
from services.common.settings import NodeSettings, node_id
from services.gateway.discovery import lan
from services.gateway.discovery.announcement import LanMesh
from services.gateway.peers import pairing

BROWSE_SECONDS = 3.0
ANY = "any"


def chosen(meshes: tuple[LanMesh, ...], wanted: str) -> LanMesh:
    """The mesh to ask: the one named (id, id prefix or name), or the only one heard."""
    named = [m for m in meshes if wanted == ANY or wanted in (m.mesh_id, m.mesh_name) or (len(wanted) >= 4 and m.mesh_id.startswith(wanted))]
    if not named:
        heard = ", ".join(f"{m.mesh_name or '(unnamed)'} {m.mesh_id}" for m in meshes) or "none"
        raise UsageError(f"no mesh {'' if wanted == ANY else repr(wanted) + ' '}found on the LAN (heard: {heard})")
    if len(named) > 1:
        listed = ", ".join(f"{m.mesh_name or '(unnamed)'} {m.mesh_id}" for m in named)
        raise UsageError(f"several meshes on the LAN ({listed}): name one, --join-nearby MESH")
    return named[0]


def addresses_of(mesh: LanMesh) -> list[str]:
    """Its nodes' QUIC addresses, the ones that answered the RTT probe first (nearest first)."""
    nodes = sorted(mesh.nodes, key=lambda n: (n.rtt is None, n.rtt or 0.0))
    return [f"[{host}]:{n.announcement.port}" if ":" in host else f"{host}:{n.announcement.port}" for n in nodes for host in n.announcement.addresses]


def pair(home: Path, wanted: str, name: str) -> tuple[str, ...]:
    """Pair with a mesh on the LAN (UsageError when none fits or every node refused); the addresses
    to dial. The node's mesh identity is its credential from then on, never the secret."""
    scan = asyncio.run(lan.browse(BROWSE_SECONDS))
    mesh = chosen(scan.meshes, wanted)
    settings = NodeSettings(home=home)
    me, my_id = node_identity.load_or_create(home), node_id(settings)
    print(f"mesh-llm: asking mesh {mesh.mesh_name or mesh.mesh_id} to let this node in", flush=True)
    failures: list[str] = []
    for address in addresses_of(mesh):
        try:
            paired = asyncio.run(pairing.ask(address, me, my_id, name or settings.name, show))
        except pairing.PairingFailed as failure:
            failures.append(str(failure))
            continue
        dial = paired.addresses or (address,)
        mesh_identity.save(home, MeshIdentity(paired.mesh_id, b"", 0, credential=paired.credential.encode(), authority=paired.authority, addresses=dial))
        print(f"mesh-llm: approved: this node joins mesh {paired.mesh_id} with its own credential", flush=True)
        return dial
    raise UsageError(f"pairing with mesh {mesh.mesh_id} failed: {'; '.join(failures) or 'no node address announced'}")


def show(code: str) -> None:
    print(f"pairing code: {code}", flush=True)
    print(f"  approve it on a member: its console, or `mesh-llm admin approve {code}` (check the code matches)", flush=True)

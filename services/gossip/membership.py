"""The mesh picture this node holds: its own record, the members it knows, the mesh secret.

Owns this state and its change counter; merge rules are swim.py's, the network is protocol.py's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from services.common import mesh_identity
from services.common.changes import Changes
from services.common.mesh_identity import MeshIdentity
from services.common.records import NodeRecord, SelfUpdate, apply_update
from services.gossip import swim
from services.gossip.swim import Member


RTT_SMOOTHING = 0.2  # weight of a new RTT sample in the moving average


@dataclass(frozen=True)
class GossipState:
    """What one node tells another: every member it knows (itself included) and the secret."""

    from_node_id: str
    members: tuple[Member, ...]
    mesh: MeshIdentity


class Membership:
    def __init__(self, own: NodeRecord, address: str, mesh: MeshIdentity, home: Path) -> None:
        self.own = own
        self.address = address
        self.mesh = mesh
        self.home = home
        # Time-based, so a restarted node's claims outrank what the mesh remembers of its last life.
        self.incarnation = int(time.time() * 1000)
        self.members: dict[str, Member] = {}
        self.rtt: dict[str, float] = {}
        self.join_error = ""
        self.join_state = ""
        self.changes = Changes()

    def own_member(self) -> Member:
        return Member(self.own, self.address, swim.ALIVE, self.incarnation)

    def state(self) -> GossipState:
        return GossipState(self.own.node_id, (self.own_member(), *self.members.values()), self.mesh)

    async def update_self(self, update: SelfUpdate) -> NodeRecord:
        updated = apply_update(self.own, update, time.time())
        if updated is not self.own:
            self.own = updated
            await self.changes.publish()
        return self.own

    async def absorb(self, state: GossipState, now: float) -> None:
        """Merge what a peer told us; refute any suspicion of ourselves; adopt a newer secret."""
        before = (self.members, self.incarnation, self.mesh)
        self.members = swim.merge(self.members, state.members, self.own.node_id, now)
        self.incarnation = swim.refute(self.incarnation, state.members, self.own.node_id)
        if state.mesh.mesh_id == self.mesh.mesh_id and state.mesh.secret_version > self.mesh.secret_version:
            self.mesh = state.mesh
            mesh_identity.save(self.home, self.mesh)
        if before != (self.members, self.incarnation, self.mesh):
            await self.changes.publish()

    async def set_members(self, members: dict[str, Member]) -> None:
        if members != self.members:
            self.members = members
            await self.changes.publish()

    async def heard_from(self, node_id: str, rtt: float) -> None:
        # Smoothed: one slow answer (a busy CPU) must not reshuffle the splits built on RTTs.
        previous = self.rtt.get(node_id)
        self.rtt[node_id] = rtt if previous is None else previous + RTT_SMOOTHING * (rtt - previous)
        await self.changes.publish()

    async def rotate_secret(self, secret: bytes) -> MeshIdentity:
        self.mesh = replace(self.mesh, secret=secret, secret_version=self.mesh.secret_version + 1)
        mesh_identity.save(self.home, self.mesh)
        await self.changes.publish()
        return self.mesh

    def live_peers(self) -> list[Member]:
        return swim.live(self.members)

"""The mesh picture this node holds: its own record, the members it knows, the mesh secret.

Owns this state and its change counter; merge rules are swim.py's, the network is probe.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from services.common import clock, mesh_identity
from services.common.changes import Changes
from services.common.credentials import Credential, Revocation
from services.common.mesh_identity import MeshIdentity
from services.common.records import JoinState, Mode, ModelDemand, NodeRecord, PairingRequest, SelfUpdate, apply_update
from services.gossip import access, demand, swim
from services.gossip.access import Access
from services.gossip.demand import DemandEntry, OwnCounter
from services.gossip.swim import Member

RTT_SMOOTHING = 0.2  # weight of a new RTT sample in the moving average
# A peer's smoothed RTT is told to watchers (placement, the gateway) when it moved this much since
# they last heard it: each probe's sample otherwise wakes both and re-runs placement, twice a
# second per peer, and those wake-ups take cores from a split's llama threads. The 80 ms split
# cap and the ordering of workers only care about changes of this size.
RTT_NEWS_RATIO = 0.2  # relative change
RTT_NEWS_FLOOR = 0.002  # seconds: smaller changes are noise on any network, loopback included


def rtt_is_news(told: float | None, rtt: float) -> bool:
    """Whether a smoothed RTT differs enough from the value watchers were last told."""
    return told is None or abs(rtt - told) > max(RTT_NEWS_FLOOR, RTT_NEWS_RATIO * told)


DEMAND_REWRITE = 60.0  # seconds between rewrites of our unchanged demand entries


@dataclass(frozen=True)
class GossipState:
    """What one node tells another: every member it knows (itself included) and the secret."""

    from_node_id: str
    members: tuple[Member, ...]
    mesh: MeshIdentity
    demand: tuple[DemandEntry, ...] = ()
    pending: tuple[PairingRequest, ...] = ()  # pairing requests waiting for approval
    issued: tuple[bytes, ...] = ()  # paired credentials, encoded (checked on receipt: access.merge)
    revocations: tuple[bytes, ...] = ()  # encoded, checked on receipt too


class Membership:
    def __init__(self, own: NodeRecord, address: str, mesh: MeshIdentity, home: Path, demand_ttl: float = 86400.0) -> None:
        self.own = own
        self.address = address
        self.mesh = mesh
        self.home = home
        # Time-based, so a restarted node's claims outrank what the mesh remembers of its last life.
        self.incarnation = int(clock.now() * 1000)
        self.members: dict[str, Member] = {}
        self.rtt: dict[str, float] = {}
        self.rtt_told: dict[str, float] = {}  # the RTTs watchers last heard (rtt_is_news)
        self.join_error = ""
        self.join_state = JoinState.STARTED
        self.changes = Changes()
        self.demand_ttl = demand_ttl
        self.demand: dict[demand.Key, DemandEntry] = {}
        self.counter = OwnCounter(own.node_id, started=clock.now())
        self.access = Access()

    def own_member(self) -> Member:
        return Member(self.own, self.address, swim.ALIVE, self.incarnation)

    def state(self) -> GossipState:
        a = self.access
        issued, revocations = tuple(c.encode() for c in a.issued), tuple(r.encode() for r in a.revocations)
        return GossipState(
            self.own.node_id, (self.own_member(), *self.members.values()), self.mesh, tuple(self.demand.values()), a.pending, issued, revocations
        )

    async def update_self(self, update: SelfUpdate) -> NodeRecord:
        updated = apply_update(self.own, update, clock.now())
        if updated is not self.own:
            self.own = updated
            await self.changes.publish()
        return self.own

    async def absorb(self, state: GossipState, now: float) -> None:
        """Merge what a peer told us; refute any suspicion of ourselves; adopt a newer secret."""
        before = (self.members, self.incarnation, self.mesh, self.demand, self.access)
        self.access = access.merge(self.access, state.pending, state.issued, state.revocations, self.mesh, clock.now())  # `now` is monotonic
        # A revoked node leaves every member's list, and nobody's gossip brings it back.
        revoked = self.access.revoked_nodes
        incoming = tuple(m for m in state.members if m.node_id not in revoked)
        self.members = {node_id: m for node_id, m in swim.merge(self.members, incoming, self.own.node_id, now).items() if node_id not in revoked}
        self.incarnation = swim.refute(self.incarnation, state.members, self.own.node_id)
        # Our own entries are ours to write: an echo of an older one must not replace them.
        theirs = [e for e in state.demand if e.origin != self.own.node_id]
        self.demand = demand.expire(demand.merge(self.demand, theirs), clock.now(), self.demand_ttl)
        # Echoes of what our previous life counted (gossip restarted): the mesh gives the counts back.
        if any([self.counter.take_back(e) for e in state.demand if e.origin == self.own.node_id]):
            self.demand = self._with_own_demand(clock.now())
        # Only members are sent the secret (the gateway withholds it from others), and only members adopt one.
        if self.mesh.member and state.mesh.secret and state.mesh.mesh_id == self.mesh.mesh_id and state.mesh.secret_version > self.mesh.secret_version:
            self.mesh = replace(self.mesh, secret=state.mesh.secret, secret_version=state.mesh.secret_version)
            mesh_identity.save(self.home, self.mesh)
        if before != (self.members, self.incarnation, self.mesh, self.demand, self.access):
            await self.changes.publish()

    async def request_pairing(self, asked: PairingRequest) -> None:
        self.access = access.request(self.access, asked, clock.now())
        await self.changes.publish()

    async def approve(self, code: str) -> Credential:
        """Issue the credential of the pairing request showing `code` (AccessError: why not)."""
        self.access, credential = access.approve(self.access, code, self.mesh, clock.now())
        await self.changes.publish()
        return credential

    async def revoke(self, node: str) -> list[Revocation]:
        """Revoke a paired node (id, id prefix or name) or "public"; the node leaves our list at once."""
        names = {m.node_id: m.record.name for m in self.members.values()}
        self.access, made = access.revoke(self.access, node, self.mesh, names, clock.now())
        self.members = {node_id: m for node_id, m in self.members.items() if node_id not in self.access.revoked_nodes}
        await self.changes.publish()
        return made

    async def set_members(self, members: dict[str, Member]) -> None:
        if members != self.members:
            self.members = members
            await self.changes.publish()

    async def heard_from(self, node_id: str, rtt: float) -> None:
        # Smoothed: one slow answer (a busy CPU) must not reshuffle the splits built on RTTs.
        previous = self.rtt.get(node_id)
        self.rtt[node_id] = rtt if previous is None else previous + RTT_SMOOTHING * (rtt - previous)
        if rtt_is_news(self.rtt_told.get(node_id), self.rtt[node_id]):
            self.rtt_told[node_id] = self.rtt[node_id]
            await self.changes.publish()

    async def rotate_secret(self, secret: bytes) -> MeshIdentity:
        self.mesh = replace(self.mesh, secret=secret, secret_version=self.mesh.secret_version + 1)
        mesh_identity.save(self.home, self.mesh)
        await self.changes.publish()
        return self.mesh

    async def count_demand(self, requests: dict[str, int]) -> None:
        """Requests this node's gateway received, per model (served or not)."""
        now = clock.now()
        if any([self.counter.count(model_id, n, now) for model_id, n in requests.items() if n > 0]):
            await self.refresh_demand()

    async def refresh_demand(self) -> None:
        """Rewrite our own entries (their hour counts age), forget everything past the TTL."""
        now = clock.now()
        self.counter.forget(now, self.demand_ttl)
        updated = self._with_own_demand(now)
        if updated != self.demand:
            self.demand = updated
            await self.changes.publish()

    def _with_own_demand(self, now: float) -> dict[demand.Key, DemandEntry]:
        """The demand map with our own entries written from the counter, past the TTL forgotten."""
        others = {key: e for key, e in self.demand.items() if e.origin != self.own.node_id}
        mine: dict[tuple[str, str], DemandEntry] = {}
        for entry in self.counter.entries(now):
            key = (entry.model_id, entry.origin)
            kept = self.demand.get(key)
            # Unchanged counts are rewritten once a minute only: every rewrite is a change to gossip.
            same = kept is not None and (kept.requests, kept.recent, kept.last_seen) == (entry.requests, entry.recent, entry.last_seen)
            mine[key] = kept if kept is not None and same and now - kept.updated_at < DEMAND_REWRITE else entry
        return demand.expire({**others, **mine}, now, self.demand_ttl)

    def demand_map(self) -> tuple[ModelDemand, ...]:
        """The mesh's demand per model, with models pinned by live nodes (their --model)."""
        records = [self.own, *(m.record for m in self.live_peers())]
        pinned = {a.model_id for r in records for a in r.assignments if a.mode != Mode.DROPPED and not a.promoted}
        return demand.summarize(self.demand.values(), pinned, clock.now())

    def live_peers(self) -> list[Member]:
        return swim.live(self.members)

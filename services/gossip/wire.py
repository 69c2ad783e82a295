"""Gossip messages between nodes: domain types to and from the peer protobufs (mesh.v1.peer)."""

from __future__ import annotations

from services.common.mesh_identity import MeshIdentity
from services.common.records import PeerStatus
from services.common.records_proto import pairing_from_proto, pairing_to_proto, record_from_proto, record_to_proto
from services.gossip.demand import DemandEntry
from services.gossip.membership import GossipState
from services.gossip.swim import Member
from services.proto.mesh.v1 import peer_pb2

KNOWN_STATUSES = frozenset(status.value for status in PeerStatus)  # a member in a status we do not know is dropped


def member_to_proto(member: Member) -> peer_pb2.Member:
    return peer_pb2.Member(record=record_to_proto(member.record), address=member.address, status=member.status, incarnation=member.incarnation)


def member_from_proto(message: peer_pb2.Member) -> Member:
    return Member(record_from_proto(message.record), message.address, PeerStatus(message.status) if message.status else PeerStatus.ALIVE, message.incarnation)


def state_to_proto(state: GossipState) -> peer_pb2.GossipState:
    return peer_pb2.GossipState(
        from_node_id=state.from_node_id,
        members=[member_to_proto(m) for m in state.members],
        secret=peer_pb2.MeshSecret(secret=state.mesh.secret, version=state.mesh.secret_version),
        demand=[
            peer_pb2.DemandEntry(model_id=e.model_id, origin=e.origin, requests=e.requests, recent=e.recent, last_seen=e.last_seen, updated_at=e.updated_at)
            for e in state.demand
        ],
        revocations=state.revocations,
        credentials=state.issued,
        pairing=[pairing_to_proto(p) for p in state.pending],
    )


def state_from_proto(message: peer_pb2.GossipState, mesh_id: str) -> GossipState:
    mesh = MeshIdentity(mesh_id, message.secret.secret, message.secret.version)
    members = tuple(member for m in message.members if (member := _known_member(m)) is not None)
    demand = tuple(DemandEntry(e.model_id, e.origin, e.requests, e.recent, e.last_seen, e.updated_at) for e in message.demand if e.model_id and e.origin)
    pending = tuple(pairing_from_proto(p) for p in message.pairing)
    return GossipState(message.from_node_id, members, mesh, demand, pending, tuple(message.credentials), tuple(message.revocations))


def _known_member(message: peer_pb2.Member) -> Member | None:
    """The member, or None for one whose status, role, mode or state this node does not know (a
    newer node's, or garbage): that member is dropped, the rest of the peer's state still counts."""
    if message.status not in KNOWN_STATUSES:
        return None
    try:
        return member_from_proto(message)
    except ValueError:
        return None

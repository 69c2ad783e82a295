"""gRPC adapter of gossip: proto in, Membership/GossipProtocol call, proto out. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.common import clock
from services.common.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from services.common.grpc_server import Context
from services.common.invite import new_secret
from services.common.mesh_identity import MeshIdentity
from services.common.records_proto import demand_to_proto, pairing_from_proto, pairing_to_proto, record_to_proto, update_from_proto
from services.gossip import access
from services.gossip.access import AccessError
from services.gossip.blackboard import sync
from services.gossip.blackboard.board import BoardOff, BoardRefused
from services.gossip.blackboard.posts import Refusal
from services.gossip.blackboard.sync import BoardSync
from services.gossip.membership import Membership
from services.gossip.probe import GossipProtocol
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc, node_pb2, peer_pb2


def identity_to_proto(mesh: MeshIdentity) -> gossip_pb2.MeshIdentity:
    return gossip_pb2.MeshIdentity(
        mesh_id=mesh.mesh_id,
        secret=mesh.secret,
        secret_version=mesh.secret_version,
        credential=mesh.credential,
        signing_key=mesh.signing_key,
        authority=mesh.authority,
    )


class GossipServicer(gossip_pb2_grpc.GossipServicer):
    def __init__(self, membership: Membership, protocol: GossipProtocol, board: BoardSync) -> None:
        self.membership = membership
        self.protocol = protocol
        self.board = board

    async def GetSelf(self, request: gossip_pb2.GetSelfRequest, context: Context) -> node_pb2.NodeRecord:
        return record_to_proto(self.membership.own)

    async def UpdateSelf(self, request: gossip_pb2.SelfUpdate, context: Context) -> node_pb2.NodeRecord:
        try:
            record = await self.membership.update_self(update_from_proto(request))
        except ValueError as invalid:
            raise InvalidArgument(str(invalid)) from invalid
        return record_to_proto(record)

    async def Watch(self, request: gossip_pb2.WatchRequest, context: Context) -> AsyncIterator[gossip_pb2.MeshView]:
        seen = -1
        while True:
            seen = await self.membership.changes.wait_newer(seen)
            yield self._view()

    def _view(self) -> gossip_pb2.MeshView:
        m = self.membership
        peers = [
            gossip_pb2.Peer(record=record_to_proto(p.record), address=p.address, status=p.status, rtt=m.rtt.get(p.node_id, 0.0))
            for p in sorted(m.live_peers(), key=lambda p: p.record.name)
        ]
        return gossip_pb2.MeshView(
            self=record_to_proto(m.own),
            peers=peers,
            mesh=identity_to_proto(m.mesh),
            address=m.address,
            join_error=m.join_error,
            gossip_rounds=self.protocol.rounds,
            join_state=m.join_state,
            demand=[demand_to_proto(d) for d in m.demand_map()],
            revoked=sorted(m.access.revoked_ids),
            pairing=[pairing_to_proto(p) for p in m.access.pending],
            paired=[c.encode() for c in m.access.issued],
        )

    async def HandlePeerMessage(self, request: gossip_pb2.PeerMessage, context: Context) -> gossip_pb2.PeerMessage:
        try:
            message = peer_pb2.GossipMessage.FromString(request.payload)
        except Exception:  # noqa: BLE001 - protobuf raises DecodeError or others for garbage
            raise InvalidArgument("malformed gossip message") from None
        try:
            reply = self.board.handle(message) if message.WhichOneof("kind") in sync.KINDS else await self.protocol.handle(message)
        except ValueError as unknown:
            # A farewell of a member in a status, role or mode we do not know (wire.py): the message is bad, not this node.
            raise InvalidArgument(f"malformed gossip message: {unknown}") from None
        payload = reply.SerializeToString()
        self.protocol.count_bytes(len(payload), len(request.payload))
        return gossip_pb2.PeerMessage(payload=payload)

    async def Leave(self, request: gossip_pb2.LeaveRequest, context: Context) -> gossip_pb2.LeaveResponse:
        await self.protocol.leave()
        return gossip_pb2.LeaveResponse()

    async def RecordDemand(self, request: gossip_pb2.DemandReport, context: Context) -> gossip_pb2.DemandReportReply:
        await self.membership.count_demand(dict(request.requests))
        return gossip_pb2.DemandReportReply()

    async def RotateSecret(self, request: gossip_pb2.RotateSecretRequest, context: Context) -> gossip_pb2.MeshIdentity:
        if not self.membership.mesh.member:
            raise FailedPrecondition("only a member holding the mesh secret can rotate it (this node joined by pairing or a public token)")
        return identity_to_proto(await self.membership.rotate_secret(new_secret()))

    async def RequestPairing(self, request: peer_pb2.PairingRequest, context: Context) -> peer_pb2.PairingRequest:
        await self.membership.request_pairing(pairing_from_proto(request))
        return request

    async def Approve(self, request: gossip_pb2.ApproveRequest, context: Context) -> gossip_pb2.AccessChange:
        names = {p.node_id: p.name for p in self.membership.access.pending}
        try:
            credential = await self.membership.approve(request.code)
        except AccessError as refused:
            raise FailedPrecondition(str(refused)) from None
        return gossip_pb2.AccessChange(node_id=credential.node_id, name=names.get(credential.node_id, ""), credential_id=credential.credential_id)

    async def Revoke(self, request: gossip_pb2.RevokeRequest, context: Context) -> gossip_pb2.AccessChange:
        names = {m.node_id: m.record.name for m in self.membership.members.values()}
        try:
            [first, *_] = await self.membership.revoke(request.node)
        except AccessError as refused:
            raise FailedPrecondition(str(refused)) from None
        return gossip_pb2.AccessChange(node_id=first.node_id, name=names.get(first.node_id, ""), credential_id=first.credential_id)

    async def PublicJoinToken(self, request: gossip_pb2.PublicJoinTokenRequest, context: Context) -> gossip_pb2.PublicJoinTokenReply:
        try:
            token = access.public_token(self.membership.access, self.membership.mesh, request.addresses or [self.membership.address])
        except AccessError as refused:
            raise FailedPrecondition(str(refused)) from None
        return gossip_pb2.PublicJoinTokenReply(token=token)

    async def Post(self, request: gossip_pb2.PostRequest, context: Context) -> peer_pb2.BoardPost:
        try:
            post = self.board.board.post(request.text, request.tags, clock.now())
        except BoardOff as off:
            raise FailedPrecondition(str(off)) from None
        except BoardRefused as refused:
            raise (ResourceExhausted if refused.reason == Refusal.RATE else InvalidArgument)(str(refused)) from None
        self.board.nudge()
        return sync.post_to_proto(post)

    async def Search(self, request: gossip_pb2.SearchRequest, context: Context) -> gossip_pb2.BoardPostList:
        try:
            found = self.board.board.search(request.terms, request.limit)
        except BoardOff as off:
            raise FailedPrecondition(str(off)) from None
        return gossip_pb2.BoardPostList(posts=[sync.post_to_proto(p) for p in found])

    async def Feed(self, request: gossip_pb2.FeedRequest, context: Context) -> gossip_pb2.BoardPostList:
        try:
            found = self.board.board.feed(request.since, request.author, request.limit)
        except BoardOff as off:
            raise FailedPrecondition(str(off)) from None
        return gossip_pb2.BoardPostList(posts=[sync.post_to_proto(p) for p in found])

"""Gossip messages from peers, as the gossip service receives them (HandlePeerMessage) and as its
probes read a peer's ack: whatever the bytes or the fields (statuses, roles and modes this node
does not know, NaN and infinite times, garbage credentials and posts), the service answers with a
message or INVALID_ARGUMENT, a probe either absorbs the peer's state or finds the peer unreachable,
and what is absorbed is well-typed. An exception of another kind would take gossip down."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.common import credentials
from services.common.errors import InvalidArgument
from services.common.mesh_identity import MeshIdentity
from services.common.records import DownloadPolicy, DownloadState, Mode, NodeRecord, PeerStatus, ProcessKind, Role
from services.gossip.blackboard import posts as rules
from services.gossip.blackboard.board import Author, Board
from services.gossip.blackboard.posts import Post, Refusal, new_post
from services.gossip.blackboard.sync import BoardSync, post_from_proto, post_to_proto
from services.gossip.membership import GossipState, Membership
from services.gossip.probe import GossipProtocol, PeerUnreachable
from services.gossip.servicer import GossipServicer
from services.gossip.settings import TEST
from services.gossip.swim import Member
from services.gossip.wire import state_from_proto, state_to_proto
from services.proto.mesh.v1 import gateway_pb2, gossip_pb2, node_pb2, peer_pb2
from tests.unit.fuzz.inputs import fuzz, mutated, run

pytestmark = pytest.mark.timeout(180)

T = TypeVar("T")

MESH = "7f3a9c01d2e4b5a6"
NOW = 1_700_000_000.0
CREDENTIAL = credentials.issue(credentials.authority_key(MESH, b"s" * 32), MESH, credentials.Kind.PAIRED, "b", b"key", now=NOW).encode()

TEXTS = st.text(max_size=12)
TIMES = st.floats() | st.just(NOW)
UINT32, UINT64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)


def named(values: type) -> st.SearchStrategy[str]:
    """One of an enum's values, or any text (a newer node's value, or garbage)."""
    return st.sampled_from([str(value) for value in values]) | TEXTS


SERVED = st.builds(
    node_pb2.ServedModel,
    model_id=TEXTS,
    state=st.integers(0, 6),
    port=UINT32,
    retry_at=TIMES,
    size_bytes=UINT64,
    kind=named(ProcessKind) | st.just(""),
)
ASSIGNMENTS = st.builds(
    node_pb2.Assignment,
    model_id=TEXTS,
    mode=named(Mode),
    workers=st.lists(TEXTS, max_size=2),
    layers=st.lists(UINT32, max_size=3),
    shards=st.lists(
        st.builds(node_pb2.Shard, node_id=TEXTS, layers=st.lists(st.builds(node_pb2.ExpertList, experts=st.lists(UINT32, max_size=3)), max_size=2)), max_size=2
    ),
)
RECORDS = st.builds(
    node_pb2.NodeRecord,
    node_id=st.sampled_from(["a", "b", "me"]) | TEXTS,
    name=TEXTS,
    role=named(Role) | st.just(""),
    memory_offered_bytes=UINT64,
    served=st.lists(SERVED, max_size=2),
    assignments=st.lists(ASSIGNMENTS, max_size=2),
    version=UINT64,
    updated_at=TIMES,
    downloads=st.lists(st.builds(node_pb2.Download, model_id=TEXTS, state=named(DownloadState), retry_at=TIMES), max_size=2),
    download_policy=named(DownloadPolicy) | st.just(""),
    publicity=st.builds(node_pb2.Publicity, mesh_name=TEXTS, max_clients=UINT32),
)
MEMBERS = st.builds(peer_pb2.Member, record=RECORDS, address=TEXTS, status=named(PeerStatus) | st.just(""), incarnation=UINT64)
STATES = st.builds(
    peer_pb2.GossipState,
    from_node_id=TEXTS,
    members=st.lists(MEMBERS, max_size=3),
    secret=st.builds(peer_pb2.MeshSecret, secret=st.binary(max_size=40), version=UINT64),
    demand=st.lists(
        st.builds(
            peer_pb2.DemandEntry, model_id=TEXTS, origin=st.sampled_from(["a", "me"]) | TEXTS, requests=UINT64, recent=UINT64, last_seen=TIMES, updated_at=TIMES
        ),
        max_size=3,
    ),
    revocations=st.lists(st.binary(max_size=40) | mutated(CREDENTIAL), max_size=2),
    credentials=st.lists(st.just(CREDENTIAL) | mutated(CREDENTIAL) | st.binary(max_size=40), max_size=2),
    pairing=st.lists(st.builds(peer_pb2.PairingRequest, code=TEXTS, node_id=TEXTS, public_key=st.binary(max_size=40), requested_at=TIMES), max_size=2),
)

VALID_POST = new_post("a", "alpha", NOW, "STATUS: fine", ("status",))
POSTS = st.builds(
    peer_pb2.BoardPost, id=TEXTS, author_id=TEXTS, author_name=TEXTS, created_at=TIMES, text=st.text(max_size=60), tags=st.lists(TEXTS, max_size=3)
) | st.builds(lambda created_at: post_to_proto(new_post("a", "alpha", created_at, "STATUS: fine")), TIMES)
MESSAGES = st.one_of(
    st.builds(lambda state: peer_pb2.GossipMessage(ping=state), STATES),
    st.builds(lambda member: peer_pb2.GossipMessage(leave=member), MEMBERS),
    st.builds(lambda target: peer_pb2.GossipMessage(ping_request=peer_pb2.PingRequest(target_address=target)), TEXTS),
    st.builds(
        lambda ids, at: peer_pb2.GossipMessage(board_digest=peer_pb2.BoardDigest(ids=ids, floor_at=at, floor_id="x")), st.lists(TEXTS, max_size=3), TIMES
    ),
    st.builds(lambda posts: peer_pb2.GossipMessage(board_posts=peer_pb2.BoardPosts(posts=posts)), st.lists(POSTS, max_size=3)),
)
VALID_PING = peer_pb2.GossipMessage(
    ping=peer_pb2.GossipState(from_node_id="a", members=[peer_pb2.Member(record=node_pb2.NodeRecord(node_id="a"), address="h:1")])
)
PAYLOADS = st.builds(lambda message: message.SerializeToString(), MESSAGES) | st.binary(max_size=100) | mutated(VALID_PING.SerializeToString())


def assert_well_typed(state: GossipState) -> None:
    for member in state.members:
        assert isinstance(member.status, PeerStatus) and isinstance(member.record.role, Role)
        assert all(isinstance(a.mode, Mode) for a in member.record.assignments)


@fuzz(200)
@given(STATES)
@example(peer_pb2.GossipState(members=[peer_pb2.Member(record=node_pb2.NodeRecord(node_id="b", role="overseer"))]))  # a role we do not know
@example(peer_pb2.GossipState(members=[peer_pb2.Member(record=node_pb2.NodeRecord(node_id="b", assignments=[node_pb2.Assignment(mode="x")]))]))
def test_a_peer_state_converts_to_well_typed_members(message: peer_pb2.GossipState) -> None:
    state = state_from_proto(peer_pb2.GossipState.FromString(message.SerializeToString()), MESH)
    assert_well_typed(state)


def test_a_state_round_trips() -> None:
    member = Member(NodeRecord(node_id="a", name="alpha"), "10.0.0.1:7000", PeerStatus.SUSPECT, 7)
    state = GossipState("a", (member,), MeshIdentity(MESH, b"s" * 32, 2))
    assert state_from_proto(state_to_proto(state), MESH) == state


class Node:
    """One gossip service's parts, in a home of its own; the network is faked at the gateway."""

    def __init__(self, home: Path, replies: list[bytes]) -> None:
        self.membership = Membership(NodeRecord("me", "me"), "10.0.0.1:7000", MeshIdentity(MESH, b"s" * 32), home)
        self.protocol = GossipProtocol(self.membership, TEST, grpc.aio.insecure_channel("127.0.0.1:1"))
        self.protocol.gateway = Gateway(replies)
        board = Board(MemoryStore(), Author("me", "me"), lambda: True)  # type: ignore[arg-type]
        self.servicer = GossipServicer(self.membership, self.protocol, BoardSync(board, self.membership, self.protocol.send, 1.0, 1.0))


class MemoryStore:
    """The board's store without SQLite: what is kept is the board's rules, not the file's."""

    def load(self) -> list[Post]:
        return []

    def apply(self, added: Iterable[Post], removed: Iterable[str]) -> None:
        pass


class Gateway:
    """Our gateway's SendToPeer: the peer's replies, in order; then silence."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies

    async def SendToPeer(self, request: gateway_pb2.PeerRequest, timeout: float, wait_for_ready: bool) -> gateway_pb2.PeerReply:
        if not self.replies:
            raise grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(), "no answer")
        return gateway_pb2.PeerReply(payload=self.replies.pop(0))


def on_node(step: Callable[[Node], Awaitable[T]], replies: tuple[bytes, ...] = ()) -> T:
    async def scenario() -> T:
        with tempfile.TemporaryDirectory() as home:
            node = Node(Path(home), list(replies))
            result = await step(node)
            assert_well_typed(node.membership.state())
            return result

    return run(scenario)


@fuzz(200)
@given(PAYLOADS)
@example(peer_pb2.GossipMessage(leave=peer_pb2.Member(record=node_pb2.NodeRecord(node_id="b", role="overseer"))).SerializeToString())
@example(
    peer_pb2.GossipMessage(
        ping=peer_pb2.GossipState(members=[peer_pb2.Member(record=node_pb2.NodeRecord(node_id="b", download_policy="all"))])
    ).SerializeToString()
)
def test_any_peer_message_is_answered_or_invalid(payload: bytes) -> None:
    async def handle(node: Node) -> None:
        try:
            reply = await node.servicer.HandlePeerMessage(gossip_pb2.PeerMessage(payload=payload), None)
        except InvalidArgument:
            return
        peer_pb2.GossipMessage.FromString(reply.payload)

    on_node(handle)


@fuzz(200)
@given(STATES)
@example(peer_pb2.GossipState(members=[peer_pb2.Member(record=node_pb2.NodeRecord(node_id="b", served=[node_pb2.ServedModel(kind="gpu-server")]))]))
def test_a_probe_absorbs_any_ack_or_finds_the_peer_unreachable(state: peer_pb2.GossipState) -> None:
    """The probe loop survives only PeerUnreachable: anything else raised here would end gossip."""

    async def probe(node: Node) -> None:
        try:
            await node.protocol.ping("10.0.0.2:7000", "b")
        except PeerUnreachable:
            pass

    on_node(probe, (peer_pb2.GossipMessage(ack=state).SerializeToString(),))


def test_a_probe_finds_a_peer_answering_garbage_unreachable() -> None:
    async def probe(node: Node) -> None:
        try:
            await node.protocol.ping("10.0.0.2:7000", "b")
        except PeerUnreachable:
            pass

    on_node(probe, (b"\xff\xff",))


# --- blackboard posts ---------------------------------------------------------------------------------


@fuzz(200)
@given(POSTS, st.just(NOW) | st.floats(0, 4e9))
@example(post_to_proto(new_post("a", "alpha", math.nan, "STATUS: fine")), NOW)  # the id of a NaN date is computable
def test_a_post_is_refused_or_kept_where_a_board_keeps_it(message: peer_pb2.BoardPost, now: float) -> None:
    post = post_from_proto(peer_pb2.BoardPost.FromString(message.SerializeToString()))
    reason = rules.refusal(post, now)
    assert reason is None or isinstance(reason, Refusal)
    if reason is None:
        assert post.post_id in rules.retain({post.post_id: post}, now)


def test_a_valid_post_round_trips() -> None:
    assert post_from_proto(peer_pb2.BoardPost.FromString(post_to_proto(VALID_POST).SerializeToString())) == VALID_POST
    assert rules.refusal(VALID_POST, NOW) is None


def test_the_probe_fake_answers_a_valid_ack() -> None:
    ack = peer_pb2.GossipMessage(ack=state_to_proto(GossipState("b", (Member(NodeRecord("b", "beta"), "10.0.0.2:7000"),), MeshIdentity(MESH, b""))))

    async def probe(node: Node) -> list[str]:
        await node.protocol.ping("10.0.0.2:7000", "b")
        return list(node.membership.members)

    assert on_node(probe, (ack.SerializeToString(),)) == ["b"]

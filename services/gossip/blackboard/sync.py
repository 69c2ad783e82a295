"""Blackboard anti-entropy: every `interval` (and at once after a local post) this node sends one
live peer, in turn over a shuffled order, the ids it holds; the peer answers with the posts we lack
and the ids it lacks, which we then send. Every member reaches every other within members - 1
rounds, a node that was away catches up on its first rounds, and the merge (a union, trimmed
alike everywhere) makes the order of delivery irrelevant.

Owns the loop and the board's peer messages (mesh.v1.peer Board*), sent through the gateway like
every gossip message; what to keep is board.py's. A peer that does not answer is skipped: the
next round goes to another, and membership (probe.py) decides whether it is alive.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from services.common import clock
from services.common.logs import event
from services.gossip.blackboard.board import Board
from services.gossip.blackboard.posts import Floor, Post
from services.gossip.membership import Membership
from services.gossip.probe import PeerUnreachable
from services.proto.mesh.v1 import peer_pb2

log = logging.getLogger(__name__)

Send = Callable[[str, peer_pb2.GossipMessage, float], Awaitable[peer_pb2.GossipMessage]]
# Bytes of post text one answer carries at most: a gossip frame is at most 1 MiB (the gateway's
# framing.py); what does not fit comes on the next round.
ANSWER_BYTES = 512 * 1024
KINDS = frozenset({"board_digest", "board_posts"})  # the GossipMessage kinds handle() answers


def post_to_proto(post: Post) -> peer_pb2.BoardPost:
    return peer_pb2.BoardPost(
        id=post.post_id, author_id=post.author_id, author_name=post.author_name, created_at=post.created_at, text=post.text, tags=post.tags
    )


def post_from_proto(message: peer_pb2.BoardPost) -> Post:
    return Post(message.id, message.author_id, message.author_name, message.created_at, message.text, tuple(message.tags))


def _floor_parts(floor: Floor) -> tuple[float, str]:
    """(floor_at, floor_id) of the messages; (0, "") for none."""
    return floor if floor else (0.0, "")


def _floor_of(message: peer_pb2.BoardDigest | peer_pb2.BoardSync) -> Floor:
    return (message.floor_at, message.floor_id) if message.floor_id else None


class BoardSync:
    def __init__(self, board: Board, membership: Membership, send: Send, interval: float, timeout: float) -> None:
        self.board = board
        self.membership = membership
        self.send = send
        self.interval = interval  # seconds between rounds
        self.timeout = timeout  # seconds a peer has to answer
        self.nudged = asyncio.Event()
        self._order: list[str] = []

    def nudge(self) -> None:
        """A local post: run a round now rather than at the next interval."""
        self.nudged.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.nudged.wait(), self.interval)
            except TimeoutError:
                # The interval passed with no local post: an ordinary round.
                pass
            self.nudged.clear()
            self.board.expire(clock.now())
            address = self._next_peer()
            if address and self.board.on():
                await self.round(address)

    async def round(self, address: str) -> None:
        """One exchange with the peer at `address`: its posts we lack in, ours it lacks out."""
        floor_at, floor_id = _floor_parts(self.board.floor())
        digest = peer_pb2.BoardDigest(ids=list(self.board.posts), floor_at=floor_at, floor_id=floor_id)
        try:
            reply = await self.send(address, peer_pb2.GossipMessage(board_digest=digest), self.timeout)
            if not reply.HasField("board_sync"):
                return  # its board is off (a public mesh without --blackboard there)
            answer = reply.board_sync
            self.board.absorb((post_from_proto(p) for p in answer.posts), clock.now())
            pushed = self.board.named(answer.wanted, _floor_of(answer), ANSWER_BYTES)
            if pushed:
                await self.send(address, peer_pb2.GossipMessage(board_posts=peer_pb2.BoardPosts(posts=[post_to_proto(p) for p in pushed])), self.timeout)
        except PeerUnreachable as silent:
            event(log, "blackboard round skipped", logging.DEBUG, peer=address, reason=str(silent))

    def handle(self, message: peer_pb2.GossipMessage) -> peer_pb2.GossipMessage:
        """Answer a peer's board message (an empty message while our board is off)."""
        if not self.board.on():
            return peer_pb2.GossipMessage()
        kind = message.WhichOneof("kind")
        if kind == "board_digest":
            digest = message.board_digest
            posts = self.board.missing_from(digest.ids, _floor_of(digest), ANSWER_BYTES)
            floor_at, floor_id = _floor_parts(self.board.floor())
            answer = peer_pb2.BoardSync(posts=[post_to_proto(p) for p in posts], wanted=self.board.lacking(digest.ids), floor_at=floor_at, floor_id=floor_id)
            return peer_pb2.GossipMessage(board_sync=answer)
        if kind == "board_posts":
            self.board.absorb((post_from_proto(p) for p in message.board_posts.posts), clock.now())
        return peer_pb2.GossipMessage()

    def _next_peer(self) -> str:
        """Live peers in turn over a shuffled order: each is reached within members - 1 rounds."""
        live = {m.node_id: m.address for m in self.membership.live_peers()}
        self._order = [node_id for node_id in self._order if node_id in live]
        if not self._order:
            self._order = list(live)
            random.shuffle(self._order)
        return live[self._order.pop()] if self._order else ""

"""Joining through a token's addresses (GossipProtocol.join): all at once, the first to answer wins.

The network is faked at `ping`: a dead address is still waiting for its answer when the test ends
(one tried after it, one by one, would never be reached), a silent one gives up as a probe timeout
does, a refusing one fails at once, a live one answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from services.common.mesh_identity import MeshIdentity
from services.common.records import NodeRecord
from services.gossip.membership import Membership
from services.gossip.probe import GossipProtocol, PeerRefused, PeerUnreachable
from services.gossip.settings import TEST
from services.gossip.wire import state_to_proto
from services.proto.mesh.v1 import peer_pb2

LIVE, DEAD, SILENT, REFUSING = "10.0.0.5:7000", "172.17.0.1:7000", "[fd00::5]:7000", "192.168.1.9:7000"
FORGED = "192.168.1.10:7000"  # answers, and refuses our credential


class FakeNetwork(GossipProtocol):
    def __init__(self, home: Path) -> None:
        membership = Membership(NodeRecord("joiner", "joiner"), "10.0.0.9:7000", MeshIdentity("m", b"\1" * 32), home)
        super().__init__(membership, TEST, grpc.aio.insecure_channel("127.0.0.1:1"))
        self.answered: list[str] = []
        self.abandoned: list[str] = []
        self.gateway_after = 0.0  # seconds our gateway takes to come up
        self.tries = 0
        self.timeouts: list[float | None] = []

    async def our_gateway(self) -> None:
        await asyncio.sleep(self.gateway_after)

    async def ping(self, address: str, node_id: str, timeout: float | None = None) -> None:
        self.tries += 1
        self.timeouts.append(timeout)
        if address == REFUSING:
            raise PeerUnreachable("wrong mesh secret")
        if address == FORGED:
            raise PeerRefused("refused: credential not issued by this mesh")
        if address == SILENT:
            await asyncio.sleep(0.01)
            raise PeerUnreachable("no answer in 0.4s")
        if address == DEAD:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.abandoned.append(address)
                raise
        self.answered.append(address)


def join(home: Path, seeds: list[str], timeout: float, gateway_after: float = 0.0, pinged_after: float | None = None) -> FakeNetwork:
    async def scenario() -> FakeNetwork:
        protocol = FakeNetwork(home)
        protocol.gateway_after = gateway_after
        if pinged_after is not None:
            asyncio.get_running_loop().call_later(pinged_after, lambda: asyncio.ensure_future(protocol.handle(member_ping(home))))
        # The bound fails a join that waits on the dead address; it is no timing claim.
        await asyncio.wait_for(protocol.join(seeds, timeout), 30)
        await asyncio.sleep(0)  # the abandoned ping sees its cancellation
        return protocol

    return asyncio.run(scenario())


def member_ping(home: Path) -> peer_pb2.GossipMessage:
    """A ping from a member the seed told about us (our gateway admitted it: it holds the mesh's credentials)."""
    member = Membership(NodeRecord("member", "member"), "10.0.0.7:7000", MeshIdentity("m", b"\1" * 32), home / "member")
    return peer_pb2.GossipMessage(ping=state_to_proto(member.state()))


def test_a_dead_address_first_does_not_hold_up_the_live_one(tmp_path: Path) -> None:
    protocol = join(tmp_path, [DEAD, REFUSING, LIVE], timeout=5.0)
    assert protocol.membership.join_state == "joined" and protocol.membership.join_error == ""
    assert protocol.answered == [LIVE]
    assert protocol.abandoned == [DEAD]  # nothing left running once one answered


def test_a_join_nobody_answers_says_why_for_every_address(tmp_path: Path) -> None:
    protocol = join(tmp_path, [REFUSING, SILENT], timeout=0.5)
    assert protocol.membership.join_state == "failed"
    assert protocol.membership.join_error == f"{REFUSING}: wrong mesh secret; {SILENT}: no answer in 0.4s"


def test_the_join_clock_starts_once_our_own_gateway_answers(tmp_path: Path) -> None:
    # A loaded machine may take longer to start this node's gateway than the whole join timeout
    # (CI: 6 s of a test profile's 8): that is no seed's silence.
    protocol = join(tmp_path, [LIVE], timeout=0.2, gateway_after=0.5)
    assert protocol.membership.join_state == "joined"
    assert protocol.answered == [LIVE]


def test_a_join_every_seed_refuses_ends_at_once(tmp_path: Path) -> None:
    # A forged, old or revoked credential gets the same answer every time: no waiting out the timeout.
    protocol = join(tmp_path, [FORGED], timeout=30.0)
    assert protocol.membership.join_state == "failed" and protocol.tries == 1
    assert "not issued by this mesh" in protocol.membership.join_error
    # One seed that only did not answer may still be the mesh: the join keeps trying it.
    protocol = join(tmp_path, [FORGED, SILENT], timeout=1.2)
    assert protocol.membership.join_state == "failed" and protocol.tries > 2


def test_a_first_contact_may_take_longer_than_a_probe(tmp_path: Path) -> None:
    # A join ping is a QUIC handshake and an admission first: on a lossy link one lost packet is
    # sent again only after ~0.3 s (CI: 20% loss, every 0.4 s try of 8 s timed out).
    protocol = join(tmp_path, [LIVE], timeout=5.0)
    assert protocol.timeouts == [2.0] and 2.0 > TEST.probe_timeout
    # Never past the join's own deadline.
    protocol = join(tmp_path, [SILENT], timeout=0.5)
    assert protocol.timeouts and all(t is not None and t <= 0.5 for t in protocol.timeouts)


def test_a_member_pinging_us_while_no_seed_answered_is_a_join(tmp_path: Path) -> None:
    # CI: the seed took our state and told the others, who pinged us; the seed's own answers were lost.
    protocol = join(tmp_path, [DEAD], timeout=30.0, pinged_after=0.3)
    assert protocol.membership.join_state == "joined" and protocol.membership.join_error == ""
    assert protocol.abandoned == [DEAD]
    assert "member" in protocol.membership.members
    # Not before a member did: a silent seed alone is a failed join.
    protocol = join(tmp_path, [SILENT], timeout=0.5)
    assert protocol.membership.join_state == "failed"

"""The gossip loop: join through seeds (all at once, the first to answer wins), probe one member
per interval (push-pull state on every ping), ask others to probe a silent member, suspect,
declare dead, leave gracefully.

Owns timing and the network calls (through the gateway's SendToPeer); merge rules are swim.py's.
Our own gateway restarting is routine: probing waits for it, and a probe it cut blames no peer. A
probe is not retried (calls.py's policy): its own timing is SWIM's, and the next round is the retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import grpc
from google.protobuf.message import DecodeError

from services.common.logs import event
from services.common.records import JoinState
from services.gossip import swim
from services.gossip.membership import GossipState, Membership
from services.gossip.metrics import GossipMetrics
from services.gossip.settings import Profile
from services.gossip.wire import member_from_proto, member_to_proto, state_from_proto, state_to_proto
from services.proto.mesh.v1 import gateway_pb2, gateway_pb2_grpc, peer_pb2

log = logging.getLogger(__name__)


class PeerUnreachable(Exception):
    """A peer did not answer in time, or refused us; the message says which."""


class PeerRefused(PeerUnreachable):
    """The peer answered, and refused to admit us (another mesh, a forged, old or revoked credential):
    asking again gets the same answer."""


class GatewayAway(PeerUnreachable):
    """Our own gateway, which carries every message, went away during the call: no word on the peer."""


class GossipProtocol:
    def __init__(self, membership: Membership, timings: Profile, gateway: grpc.aio.Channel, metrics: GossipMetrics | None = None) -> None:
        self.membership = membership
        self.metrics = metrics
        self.timings = timings
        self.gateway_channel = gateway
        self.gateway = gateway_pb2_grpc.GatewayStub(gateway)
        self.rounds = 0
        self._order: list[str] = []
        self._reached = asyncio.Event()  # a member pinged us while we were joining
        self._reached_by = ""

    async def run(self, seeds: list[str], join_timeout: float) -> None:
        if seeds:
            await self.join(seeds, join_timeout or self.timings.join_timeout)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._probe_forever())
            group.create_task(self._expire_forever())

    async def join(self, seeds: list[str], timeout: float) -> None:
        """Exchange state with a seed; keep trying all seeds until `timeout`, then record why not.
        The clock starts once our own gateway answers: a slow start of this node (a loaded machine)
        is no seed's silence. A member of the mesh pinging us meanwhile is a join made too: a seed
        took our state and passed it on, and only its answer to us was lost."""
        self.membership.join_state = JoinState.JOINING
        await self.our_gateway()
        deadline = time.monotonic() + timeout
        reached = asyncio.create_task(self._reached.wait())
        try:
            while (left := deadline - time.monotonic()) > 0:
                attempt = asyncio.create_task(self._first_answering(seeds, min(left, self.first_contact_timeout())))
                await asyncio.wait({attempt, reached}, return_when=asyncio.FIRST_COMPLETED)
                if reached.done():
                    attempt.cancel()
                    await asyncio.gather(attempt, return_exceptions=True)
                    break
                seed, refused = attempt.result()
                if seed:
                    return await self._joined(seed=seed)
                if refused:
                    break  # every seed answered no: waiting out the timeout would only delay the same answer
                await asyncio.wait({reached}, timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            if reached.done():
                return await self._joined(reached_by=self._reached_by)
        finally:
            reached.cancel()
        event(log, "join failed", logging.WARNING, seeds=",".join(seeds), reason=self.membership.join_error)
        self.membership.join_state = JoinState.FAILED
        await self.membership.changes.publish()

    def first_contact_timeout(self) -> float:
        """Seconds one join ping may take. More than a probe's: a first contact is a QUIC handshake
        and an admission before the ping, and on a lossy link a lost handshake packet is sent again
        only after ~0.3 s and more (QUIC's probe timeout, doubling); a probe's 0.4 s allows none."""
        return max(4 * self.timings.probe_timeout, 2.0)

    async def _joined(self, **how: object) -> None:
        event(log, "joined mesh", logging.INFO, **how)
        self.membership.join_error = ""
        self.membership.join_state = JoinState.JOINED
        await self.membership.changes.publish()

    async def our_gateway(self) -> None:
        """Returns once this node's gateway (every message's way out) is reachable."""
        await self.gateway_channel.channel_ready()

    async def _first_answering(self, seeds: list[str], timeout: float) -> tuple[str, bool]:
        """(the seed that answered first, False), or ('', whether every seed refused us) with every
        seed's reason in join_error.

        All at once: a token carries every address of its issuer and some may be unreachable from
        here (another network's interface, a container bridge); one by one, each dead address
        would cost a whole probe timeout before the live one is tried."""
        pings = {asyncio.create_task(self.ping(seed, "", timeout)): seed for seed in dict.fromkeys(seeds)}
        reasons = dict.fromkeys(pings.values(), "no answer")
        refused: set[str] = set()
        pending = set(pings)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    failure = task.exception()
                    if failure is None:
                        return pings[task], False
                    if not isinstance(failure, PeerUnreachable):
                        raise failure
                    reasons[pings[task]] = str(failure)
                    if isinstance(failure, PeerRefused):
                        refused.add(pings[task])
            self.membership.join_error = "; ".join(f"{seed}: {reason}" for seed, reason in reasons.items())
            return "", refused == set(reasons)
        finally:
            # The others lost the race: their state would be the same mesh's, and one answer is enough.
            for task in pending:
                task.cancel()

    async def ping(self, address: str, node_id: str, timeout: float | None = None) -> None:
        """Push our state to a peer and absorb its state from the ack."""
        message = peer_pb2.GossipMessage(ping=state_to_proto(self.membership.state()))
        reply = await self._send(address, message, timeout or self.timings.probe_timeout)
        if not reply.HasField("ack"):
            raise PeerUnreachable("peer answered a ping without an ack")
        state = state_from_proto(reply.ack, self.membership.mesh.mesh_id)
        await self.membership.absorb(state, time.monotonic())
        self.rounds += 1

    async def send(self, address: str, message: peer_pb2.GossipMessage, timeout: float) -> peer_pb2.GossipMessage:
        """One message to a peer and its reply, for gossip's other parts (the blackboard's sync). Its
        round trip is no RTT sample: the peer's answer waits on its board (SQLite, at idle priority
        under a loaded CPU), and a slow one would push the peer past the split's 80 ms cap."""
        return await self._send(address, message, timeout, measure=False)

    async def _send(self, address: str, message: peer_pb2.GossipMessage, timeout: float, *, measure: bool = True) -> peer_pb2.GossipMessage:
        request = gateway_pb2.PeerRequest(address=address, payload=message.SerializeToString(), timeout=timeout)
        try:
            reply = await self.gateway.SendToPeer(request, timeout=timeout + 1.0, wait_for_ready=True)
        except grpc.aio.AioRpcError as failure:
            if self.gateway_channel.get_state() != grpc.ChannelConnectivity.READY:
                raise GatewayAway(f"our gateway is away ({failure.code().name})") from None
            if failure.code() == grpc.StatusCode.PERMISSION_DENIED:  # the gateway's word for an admission refused
                raise PeerRefused(failure.details() or failure.code().name) from None
            raise PeerUnreachable(failure.details() or failure.code().name) from None
        self.count_bytes(len(request.payload), len(reply.payload))
        try:
            message = peer_pb2.GossipMessage.FromString(reply.payload)
        except DecodeError:
            # A peer that answers garbage is as good as silent: one such reply must not end the probe loop.
            raise PeerUnreachable("peer answered with no gossip message") from None
        if reply.peer_node_id and measure:
            await self.membership.heard_from(reply.peer_node_id, reply.rtt)
        return message

    def count_bytes(self, sent: int, received: int) -> None:
        if self.metrics is not None:
            self.metrics.message_bytes.labels("sent").inc(sent)
            self.metrics.message_bytes.labels("received").inc(received)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.timings.probe_interval)
            # While our gateway restarts every probe would fail: silence we caused proves nothing.
            await self.our_gateway()
            target = self._next_target()
            if target is not None:
                await self.probe(target)
            await self._call_the_dead()

    async def _call_the_dead(self) -> None:
        """Ping one crashed member now and then: after a partition heals, the two sides find each
        other again (the dead side refutes our claim with a higher incarnation)."""
        dead = [m for m in self.membership.members.values() if m.status == swim.DEAD]
        if dead and random.random() < 0.5:
            try:
                await self.ping(random.choice(dead).address, "")
            except PeerUnreachable:
                # Still unreachable: it stays dead until its tombstone is forgotten.
                pass

    def _next_target(self) -> swim.Member | None:
        """Round-robin over live members in a shuffled order (SWIM's bounded detection time)."""
        live = {m.node_id: m for m in self.membership.live_peers()}
        self._order = [node_id for node_id in self._order if node_id in live]
        if not self._order:
            self._order = list(live)
            random.shuffle(self._order)
        return live[self._order.pop()] if self._order else None

    async def probe(self, target: swim.Member) -> None:
        try:
            await self.ping(target.address, target.node_id)
            return
        except GatewayAway:
            return  # the next round probes again, through the gateway back up
        except PeerUnreachable:
            # Not proof of death: the path may be lossy. Ask others to try before suspecting.
            pass
        if await self._indirect_probe(target):
            return
        current = self.membership.members.get(target.node_id)
        if current is not None and current.status == swim.ALIVE and current.incarnation == target.incarnation:
            event(log, "member suspected", logging.WARNING, peer=target.node_id, address=target.address)
            if self.metrics is not None:
                self.metrics.suspicions.inc()
            await self.membership.set_members({**self.membership.members, target.node_id: swim.suspect(current, time.monotonic())})

    async def _indirect_probe(self, target: swim.Member) -> bool:
        helpers = [m for m in self.membership.live_peers() if m.node_id != target.node_id and m.status == swim.ALIVE]
        helpers = random.sample(helpers, min(len(helpers), self.timings.indirect_probes))
        if not helpers:
            return False
        request = peer_pb2.GossipMessage(ping_request=peer_pb2.PingRequest(target_address=target.address, target_node_id=target.node_id))
        results = await asyncio.gather(*(self._send(h.address, request, self.timings.probe_timeout * 2) for h in helpers), return_exceptions=True)
        return any(isinstance(r, peer_pb2.GossipMessage) and r.indirect_ack for r in results)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(self.timings.probe_interval / 2)
            now = time.monotonic()
            members = swim.expire(self.membership.members, now, self.timings.suspicion_timeout)
            for node_id, member in members.items():
                if member.status == swim.DEAD and self.membership.members[node_id].status != swim.DEAD:
                    event(log, "member dead", logging.WARNING, peer=node_id, address=member.address)
                    if self.metrics is not None:
                        self.metrics.deaths.inc()
            await self.membership.set_members(swim.forget(members, now, self.timings.forget_after))
            await self.membership.refresh_demand()

    async def handle(self, message: peer_pb2.GossipMessage) -> peer_pb2.GossipMessage:
        """Answer a message a peer sent us."""
        kind = message.WhichOneof("kind")
        if kind == "ping":
            state = state_from_proto(message.ping, self.membership.mesh.mesh_id)
            await self.membership.absorb(state, time.monotonic())
            self.rounds += 1
            if self.membership.join_state == JoinState.JOINING and not self._reached.is_set():
                # Our gateway admitted the sender: it holds the mesh's credentials, so the mesh knows us.
                self._reached_by = state.from_node_id
                self._reached.set()
            return peer_pb2.GossipMessage(ack=state_to_proto(self.membership.state()))
        if kind == "ping_request":
            try:
                await self.ping(message.ping_request.target_address, message.ping_request.target_node_id)
                return peer_pb2.GossipMessage(indirect_ack=True)
            except PeerUnreachable:
                return peer_pb2.GossipMessage(indirect_ack=False)
        if kind == "leave":
            farewell = member_from_proto(message.leave)
            event(log, "member left", peer=farewell.node_id)
            await self.membership.absorb(GossipState(farewell.node_id, (farewell,), self.membership.mesh), time.monotonic())
        return peer_pb2.GossipMessage()

    async def leave(self) -> None:
        """Tell every live peer we are leaving, so they drop us at once instead of suspecting us."""
        own = self.membership.own_member()
        farewell = swim.Member(own.record, own.address, swim.LEFT, own.incarnation)
        message = peer_pb2.GossipMessage(leave=member_to_proto(farewell))
        await asyncio.gather(*(self._send(m.address, message, 1.0) for m in self.membership.live_peers()), return_exceptions=True)

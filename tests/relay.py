"""A UDP relay of ours in front of test nodes: delay, jitter, loss and partitions, changeable live.

The kernel here has no netem. Each node's QUIC endpoint gets a relay address on its own loopback
IP; peers dial the relay (the node advertises it), the relay forwards to the node and back. Rules
apply to the unordered pair of nodes a packet travels between, identified by their loopback IPs.
Runs its own event loop in a background thread; bounded to loopback addresses.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass


@dataclass
class LinkRule:
    delay: float = 0.0  # seconds added one way
    jitter: float = 0.0  # up to this many seconds more, at random
    loss: float = 0.0  # probability a packet is dropped
    blocked: bool = False  # partition: every packet dropped


class _Front(asyncio.DatagramProtocol):
    """The relay's socket for one node: packets from peers come in here and replies go out here."""

    def __init__(self, relay: Relay, node_ip: str, target: tuple[str, int]) -> None:
        self.relay, self.node_ip, self.target = relay, node_ip, target
        self.transport: asyncio.DatagramTransport | None = None
        self.upstreams: dict[tuple[str, int], asyncio.DatagramTransport] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, source: tuple[str, int]) -> None:
        upstream = self.upstreams.get(source)
        if upstream is None:
            asyncio.ensure_future(self._open_upstream(source, data))
            return
        self.relay.forward(source[0], self.node_ip, lambda: upstream.sendto(data, self.target))

    async def _open_upstream(self, source: tuple[str, int], first: bytes) -> None:
        loop = asyncio.get_running_loop()
        front = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, _addr: tuple[str, int]) -> None:
                assert front.transport is not None
                front.relay.forward(front.node_ip, source[0], lambda: front.transport.sendto(data, source))

        if source not in self.upstreams:
            transport, _ = await loop.create_datagram_endpoint(Back, local_addr=("127.0.0.1", 0))
            self.upstreams[source] = transport
        upstream = self.upstreams[source]
        self.relay.forward(source[0], self.node_ip, lambda: upstream.sendto(first, self.target))


class Relay:
    def __init__(self, seed: int = 7) -> None:
        self.rules: dict[frozenset[str], LinkRule] = {}
        self.default = LinkRule()
        self.random = random.Random(seed)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fronts: list[_Front] = []

    def front(self, node_ip: str, relay_port: int, target: tuple[str, int]) -> None:
        """Relay packets sent to node_ip:relay_port on to target (the node's real QUIC address)."""
        assert node_ip.startswith("127.") and target[0].startswith("127.")

        async def open_front() -> None:
            front = _Front(self, node_ip, target)
            await self.loop.create_datagram_endpoint(lambda: front, local_addr=(node_ip, relay_port))
            self.fronts.append(front)

        asyncio.run_coroutine_threadsafe(open_front(), self.loop).result(5)

    def set_link(self, a: str, b: str, rule: LinkRule) -> None:
        self.rules[frozenset((a, b))] = rule

    def set_default(self, rule: LinkRule) -> None:
        self.default = rule

    def partition(self, side: set[str], other: set[str]) -> None:
        for a in side:
            for b in other:
                self.set_link(a, b, LinkRule(blocked=True))

    def heal(self) -> None:
        self.rules.clear()

    def forward(self, source_ip: str, destination_ip: str, send: object) -> None:
        rule = self.rules.get(frozenset((source_ip, destination_ip)), self.default)
        if rule.blocked or self.random.random() < rule.loss:
            return
        delay = rule.delay + self.random.random() * rule.jitter
        if delay > 0:
            self.loop.call_later(delay, send)
        else:
            send()

    def close(self) -> None:
        async def shut() -> None:
            for front in self.fronts:
                for upstream in front.upstreams.values():
                    upstream.close()
                if front.transport:
                    front.transport.close()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

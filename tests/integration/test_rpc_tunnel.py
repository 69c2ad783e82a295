"""RPC tunnels over real QUIC: two gateways' endpoints in one process, an echo server standing in
for rpc-server. Checks that bytes arrive whole and in order both ways, that half-closes and
closes travel, and that only published ports are reachable."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from services.common import credentials, node_identity
from services.common.credentials import Kind
from services.gateway.peers.admission import LocalNode
from services.gateway.peers.endpoint import PeerEndpoint, StreamHandler, open_endpoint
from services.gateway.peers.framing import StreamKind
from services.gateway.peers.links import PeerLinks
from services.gateway.tunnel.rpc import RpcTunnels, RpcTunnelServer

SECRET = b"s" * 32


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until end of stream, then half-close back (as a server that answers every command)."""
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.write_eof()
    await writer.drain()
    writer.close()


async def endpoint(
    home: Path,
    name: str,
    handlers: Mapping[StreamKind, StreamHandler] | None = None,
    datagram_bytes: int = 1200,
    mesh: tuple[str, bytes] = ("mesh-test", SECRET),
    kind: Kind = Kind.MEMBER,
    revoked: Collection[str] = (),
    credential: bool = True,
) -> tuple[PeerEndpoint, PeerLinks]:
    """A node's endpoint on a free loopback port serving `handlers`, and its links to peers; `mesh`:
    its mesh id and the secret its credential is issued from; `kind`: member (it holds the secret) or
    paired (a member issued its credential; `revoked`: the credential ids it refuses); `credential`:
    False for a node whose gateway has not been told its credential yet."""
    me = node_identity.load_or_create(home / name)
    key = node_identity.private_key(me)
    authority = credentials.authority_key(*mesh)
    own = credentials.issue(authority, mesh[0], kind, name, credentials.public_der(key), time.time(), f"{kind}-{name}")

    def local() -> LocalNode:
        port = opened._transport.get_extra_info("sockname")[1]  # bound once opened, before any peer asks
        return LocalNode(mesh[0], name, f"127.0.0.1:{port}", own if credential else None, key, credentials.raw_public(authority), revoked)

    opened = await open_endpoint("127.0.0.1", 0, identity=me, local=local, handlers=handlers or {}, idle_timeout=30.0, datagram_bytes=datagram_bytes)
    return opened, PeerLinks(opened, lambda *_: None)


@asynccontextmanager
async def tunnel(
    tmp_path: Path, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] = echo, publish: bool = True
) -> AsyncIterator[tuple[int, dict[str, int], PeerLinks]]:
    """(local tunnel port on the host, bytes counted per direction, the host's links) to a server on the worker."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    server_port = server.sockets[0].getsockname()[1]
    counted: dict[str, int] = {"sent": 0, "received": 0}

    def count(worker: str, direction: str, size: int) -> None:
        counted[direction] += size

    (host, host_links), (worker, _) = (
        await endpoint(tmp_path, "host"),
        await endpoint(tmp_path, "worker", {StreamKind.RPC: RpcTunnelServer(lambda: {server_port: ""} if publish else {}).serve}),
    )
    tunnels = RpcTunnels(host_links, count, connect_timeout=10.0)
    port = await tunnels.open(worker.local().address, server_port)
    try:
        yield port, counted, host_links
    finally:
        tunnels.close_all()
        host.close()
        worker.close()
        server.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def test_bytes_arrive_whole_and_in_order_both_ways(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with tunnel(tmp_path) as (port, counted, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # Many small request/answer turns (a token's commands), then a large upload (weights).
            for turn in range(200):
                message = os.urandom(1 + turn * 97 % 4000)
                writer.write(message)
                assert await reader.readexactly(len(message)) == message
            bulk = os.urandom(3 << 20)
            writer.write(bulk)
            writer.write_eof()  # the half-close travels: the echo server ends its side after the bulk
            assert await reader.readexactly(len(bulk)) == bulk
            assert await reader.read() == b""
            writer.close()
            expected = sum(1 + turn * 97 % 4000 for turn in range(200)) + len(bulk)
            assert counted == {"sent": expected, "received": expected}

    run(scenario)


def test_a_closed_worker_connection_closes_the_host_side(tmp_path: Path) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        writer.write(b"bye")
        writer.close()  # as an rpc-server that dies mid-session

    async def scenario() -> None:
        async with tunnel(tmp_path, hang_up) as (port, _, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello")
            assert await reader.readexactly(3) == b"bye"
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()

    run(scenario)


def test_an_unpublished_port_is_not_reached(tmp_path: Path) -> None:
    reached = asyncio.Event()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.set()
        writer.close()

    async def scenario() -> None:
        async with tunnel(tmp_path, record, publish=False) as (port, _, host_links):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x00" * 100)
            # The worker drops the stream: the host's TCP connection ends.
            try:
                assert await asyncio.wait_for(reader.read(), 10) == b""
            except ConnectionResetError:
                pass  # an abort is as good as an end: nothing was reached
            writer.close()
            assert not reached.is_set()
            # Only the stream: the peers' connection (their gossip and requests) stays up.
            assert [c.admitted.is_set() for c in host_links.endpoint.connections] == [True]

    run(scenario)


@asynccontextmanager
async def counted_tunnel(
    tmp_path: Path, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], datagram_bytes: int
) -> AsyncIterator[tuple[int, dict[str, int]]]:
    """(local tunnel port on the host, datagrams each endpoint has sent so far) to a server on the worker."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    server_port = server.sockets[0].getsockname()[1]
    host, host_links = await endpoint(tmp_path, "host", datagram_bytes=datagram_bytes)
    worker, _ = await endpoint(tmp_path, "worker", {StreamKind.RPC: RpcTunnelServer(lambda: {server_port: ""}).serve}, datagram_bytes)
    sent = {"host": 0, "worker": 0}  # counted where the other side reads them
    for name, reader in (("host", worker), ("worker", host)):
        read = reader.datagrams_received

        def counting(batch: list, name: str = name, read: Callable[[list], None] = read) -> None:
            sent[name] += len(batch)
            read(batch)

        reader.datagrams_received = counting
    tunnels = RpcTunnels(host_links, lambda *_: None, connect_timeout=10.0)
    port = await tunnels.open(worker.local().address, server_port)
    try:
        yield port, sent
    finally:
        tunnels.close_all()
        host.close()
        worker.close()
        server.close()


@pytest.mark.parametrize(
    ("datagram_bytes", "datagrams"),
    [
        (16384, {"host": 2, "worker": 2}),  # loopback-sized datagrams: the data in one, aioquic's ACK in another
        (1452, {"host": 9, "worker": 7}),  # Ethernet-sized: 11 KB and 8 KB of data, and an ACK
    ],
)
def test_a_tokens_round_trip_sends_its_data_in_as_few_datagrams_as_fit(tmp_path: Path, datagram_bytes: int, datagrams: dict[str, int]) -> None:
    # A split's token: the host sends a burst, the worker computes and answers, the host computes
    # the next burst. Each side sends its data in as few datagrams as the size allows (one batch,
    # peers/udp.py) plus aioquic's ACK of the other side's data.
    burst, answer = 11_000, 8_192

    async def compute_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                await reader.readexactly(burst)
                await asyncio.sleep(0.003)
                writer.write(b"a" * answer)

    async def scenario() -> None:
        async with counted_tunnel(tmp_path, compute_then_answer, datagram_bytes) as (port, sent):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for turn in range(60):
                if turn == 20:  # warmed up: congestion window open, the streams set up
                    before = dict(sent)
                writer.write(os.urandom(burst))
                await reader.readexactly(answer)
                await asyncio.sleep(0.005)
            per_turn = {name: (sent[name] - before[name]) / 40 for name in sent}
            writer.close()
            assert all(abs(per_turn[side] - datagrams[side]) <= 0.2 for side in per_turn), per_turn

    run(scenario)


def test_a_bulk_upload_is_acknowledged_every_few_packets(tmp_path: Path) -> None:
    # Unprimed weights: the sender's congestion window needs the receiver's ACKs as the data flows.
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = 0
        while data := await reader.read(1 << 16):
            received += len(data)
        writer.write(received.to_bytes(8, "big"))
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with counted_tunnel(tmp_path, swallow, 1200) as (port, sent):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            before = dict(sent)
            writer.write(os.urandom(2 << 20))
            writer.write_eof()
            assert int.from_bytes(await reader.readexactly(8), "big") == 2 << 20
            writer.close()
            host, worker = sent["host"] - before["host"], sent["worker"] - before["worker"]
            assert host > 1500 and worker >= host / 40, (host, worker)  # aioquic alone: ~1 in 24 here (batched reads)

    run(scenario)

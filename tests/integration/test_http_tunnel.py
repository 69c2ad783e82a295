"""HTTP tunnels over real QUIC (two gateways' endpoints in one process), with a fake llama-server
that streams an endless answer as fast as its socket takes it.

A client that stops reading must hold generation back, not fill the serving node's memory: both
nodes keep at most a window of the answer (tunnel/credit.py). A response whose serving node goes
away must read as cut, never as a short answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.gateway.peers.endpoint import PeerEndpoint
from services.gateway.peers.framing import StreamKind
from services.gateway.tunnel.client import TunnelUpstream
from services.gateway.tunnel.credit import WINDOW_BYTES
from services.gateway.tunnel.server import TunnelServer
from services.gateway.upstream import LocalUpstream, ResponseCut, UpstreamResponse
from tests.integration.test_rpc_tunnel import endpoint, run

# What either node may hold of one answer: a window, one chunk past it, frame headers. A fixed
# number, not credit.py's: a larger window than this is a regression the test must catch.
BOUND = 256 * 1024 + 64 * 1024 + 32 * 1024
PAD = "x" * 1000


def sse_event(number: int) -> bytes:
    return b"data: " + json.dumps({"n": number, "pad": PAD}).encode() + b"\n\n"


@dataclass
class Producer:
    """A llama-server stand-in: an endless SSE answer, written as fast as its socket takes it."""

    produced: int = 0
    waiting: bool = False  # in drain(): its socket is full, generation is held back
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    events: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            while True:
                batch = b"".join(sse_event(self.events + i) for i in range(64))
                self.events += 64
                writer.write(b"%x\r\n%s\r\n" % (len(batch), batch))
                self.produced += len(batch)
                self.waiting = writer.transport.get_write_buffer_size() > 0
                await writer.drain()
                self.waiting = False
                await asyncio.sleep(0)  # drain() does not yield while the socket takes everything
        except (ConnectionError, OSError):
            pass  # the gateway closed the request: the slot is free
        finally:
            self.closed.set()
            writer.close()


@dataclass
class Tunnel:
    requester: PeerEndpoint
    server: PeerEndpoint
    upstream: TunnelUpstream
    producer: Producer

    def serving_node_buffered(self) -> int:
        """Response bytes the serving node's QUIC streams hold (written, not yet acknowledged)."""
        return sum(len(stream.sender._buffer) for connection in self.server.connections for stream in connection._quic._streams.values())

    def requester_buffered(self) -> int:
        """Response bytes that arrived at the requester and wait in its stream readers."""
        return sum(len(reader._buffer) for connection in self.requester.connections for reader in connection._stream_readers.values())

    async def open(self) -> UpstreamResponse:
        return await self.upstream.open(self.server.local().address, "/v1/chat/completions", "m", b'{"stream": true}', "r1")


@asynccontextmanager
async def http_tunnel(tmp_path: Path, llama_server=None) -> AsyncIterator[Tunnel]:
    producer = Producer()
    llama = await asyncio.start_server(llama_server or producer.serve, "127.0.0.1", 0)
    port = llama.sockets[0].getsockname()[1]
    local = LocalUpstream(5.0)
    (requester, requester_links), (server, _) = (
        await endpoint(tmp_path, "requester"),
        await endpoint(tmp_path, "server", {StreamKind.HTTP: TunnelServer(lambda model: (port, 0, ""), local, lambda *_: None).serve}),
    )
    try:
        yield Tunnel(requester, server, TunnelUpstream(requester_links, lambda *_: None, 10.0), producer)
    finally:
        requester.close()
        server.close()
        llama.close()
        await local.close()


async def wait_for(condition, what: str, deadline: float = 30.0, check=lambda: None) -> None:
    """Poll until condition() holds, running check() on every poll (it raises to fail fast)."""
    async with asyncio.timeout(deadline):
        while not condition():
            check()
            await asyncio.sleep(0.005)
    check()


def test_a_client_that_does_not_read_holds_generation_back_within_a_bound(tmp_path: Path) -> None:
    peaks = {"serving": 0, "requester": 0}

    async def scenario() -> None:
        async with http_tunnel(tmp_path) as tunnel:

            def within_bound() -> None:
                peaks["serving"] = max(peaks["serving"], tunnel.serving_node_buffered())
                peaks["requester"] = max(peaks["requester"], tunnel.requester_buffered())
                assert peaks["serving"] <= BOUND and peaks["requester"] <= BOUND, (peaks, tunnel.producer.produced)

            response = await tunnel.open()
            assert response.status == 200

            # Nobody reads: a window's worth reaches the requester (nothing is granted, so the
            # serving node reads no more from its llama-server), everything sent is acknowledged,
            # and the producer ends up waiting on its full socket, and stays there.
            def held_back() -> bool:
                return tunnel.requester_buffered() >= WINDOW_BYTES and tunnel.serving_node_buffered() == 0 and tunnel.producer.waiting

            await wait_for(held_back, "producer held back", check=within_bound)
            held_at = tunnel.producer.produced
            for _ in range(50):
                await asyncio.sleep(0.01)
                within_bound()
            assert tunnel.producer.produced == held_at, "the producer went on while nobody read"
            print(
                f"bound {BOUND} B; peak buffered: serving node {peaks['serving']} B, requester {peaks['requester']} B; "
                f"producer held back after {held_at} B (the rest in loopback socket buffers)"
            )

            # The client reads again: the answer flows on, whole and in order, still within the bound.
            expected = 0
            body = response.chunks
            pending = b""
            async for chunk in body:
                within_bound()
                pending += chunk
                *events, pending = pending.split(b"\n\n")
                for raw in events:
                    assert json.loads(raw[len(b"data: ") :])["n"] == expected
                    expected += 1
                if tunnel.producer.produced > held_at + (4 << 20):
                    break
            # The client goes away: the far end's upstream request is closed (the slot is freed).
            await body.aclose()
            await response.close()
            await asyncio.wait_for(tunnel.producer.closed.wait(), 10)

    run(scenario)
    assert peaks["requester"] > 0  # the window did fill: the bound was tested, not idle


def test_a_serving_node_that_goes_away_mid_answer_reads_as_cut(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with http_tunnel(tmp_path) as tunnel:
            response = await tunnel.open()
            received = 0
            with pytest.raises(ResponseCut):
                async for chunk in response.chunks:
                    received += len(chunk)
                    if received > 100_000 and tunnel.server.connections:
                        tunnel.server.close()  # the node stops: its connections close under the stream
            await response.close()
            assert received > 100_000

    run(scenario)


def test_an_answer_that_ends_reads_whole(tmp_path: Path) -> None:
    """The end frame: a finished answer ends cleanly, and the stream is let go on both sides."""

    async def finite(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"".join(sse_event(n) for n in range(2000)) + b"data: [DONE]\n\n"
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    async def scenario() -> None:
        async with http_tunnel(tmp_path, finite) as tunnel:
            response = await tunnel.open()
            body = b"".join([chunk async for chunk in response.chunks])
            await response.close()
            assert body.endswith(b"data: [DONE]\n\n") and body.count(b"\n\n") == 2001
            await wait_for(lambda: not any(c._quic._streams for c in tunnel.server.connections), "streams let go")

    run(scenario)

"""How a peer's streams end over real QUIC (two endpoints in one process): a peer that never
answers, a connection that closes under busy streams, a gossip message our gossip service cannot
answer. Each must end cleanly, with nothing left for asyncio to report as never retrieved."""

from __future__ import annotations

import asyncio
import gc
import socket
from pathlib import Path

import grpc
import pytest

from services.gateway.peers.framing import StreamKind
from services.gateway.peers.links import request_reply
from services.gateway.server import answer_gossip
from tests.integration.test_rpc_tunnel import endpoint, run


def test_a_peer_that_never_answers_leaves_no_unretrieved_failure(tmp_path: Path) -> None:
    """A connect that times out (a dead peer gossip keeps probing) is closed quietly: no asyncio
    'exception was never retrieved' error a second later, once per probe, in the node's log."""
    unhandled: list[str] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context["message"]))
        lonely, links = await endpoint(tmp_path, "lonely")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:  # bound, never read: a powered-off peer
            dead.bind(("127.0.0.1", 0))
            with pytest.raises(TimeoutError):
                await lonely.connect(f"127.0.0.1:{dead.getsockname()[1]}", 0.3)
            with pytest.raises(TimeoutError):  # gossip's way: the request gives up while its connect still tries
                await links.request(f"127.0.0.1:{dead.getsockname()[1]}", StreamKind.GOSSIP, b"ping", 0.3)
            await asyncio.sleep(3)  # the abandoned handshake's close lands (3 PTOs)
        gc.collect()  # asyncio reports an unretrieved failure when its future is collected
        await asyncio.sleep(0)
        lonely.close()

    run(scenario)
    assert unhandled == []


def test_work_on_a_peers_streams_stops_when_its_connection_ends(tmp_path: Path) -> None:
    """A handler still busy with a peer's stream (a relayed request, a gossip reply) is cancelled
    when the peer's connection ends, not left pending for asyncio to destroy."""

    async def scenario() -> None:
        started, cancelled = asyncio.Event(), asyncio.Event()

        async def busy(connection: object, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        (host, host_links), (worker, _) = await endpoint(tmp_path, "host"), await endpoint(tmp_path, "worker", {StreamKind.RPC: busy})
        connection = await host_links.connection_to(worker.local().address, 10.0)
        _, writer = await connection.create_stream()
        writer.write(bytes([StreamKind.RPC]))
        await asyncio.wait_for(started.wait(), 10)
        host.close()  # the peer goes away (its connection closes)
        await asyncio.wait_for(cancelled.wait(), 10)
        worker.close()

    run(scenario)


def test_a_gossip_message_our_gossip_service_cannot_answer_ends_its_stream(tmp_path: Path) -> None:
    """Our gossip service stopping (CANCELLED) or stuck: the asking peer sees the stream end at
    once, as from a node going down, and nothing is left unretrieved in our log."""

    class StoppingGossip:
        async def HandlePeerMessage(self, message: object, timeout: float) -> object:
            raise grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), details="CANCELLED")

    unhandled: list[str] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context["message"]))
        gossip = request_reply(answer_gossip(StoppingGossip()), lambda *_: None)
        (host, host_links), (worker, _) = await endpoint(tmp_path, "host"), await endpoint(tmp_path, "worker", {StreamKind.GOSSIP: gossip})
        with pytest.raises(asyncio.IncompleteReadError):  # SendToPeer answers this UNAVAILABLE
            await host_links.request(worker.local().address, StreamKind.GOSSIP, b"ping", 10.0)
        host.close()
        worker.close()
        gc.collect()
        await asyncio.sleep(0)

    run(scenario)
    assert unhandled == []

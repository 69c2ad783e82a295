"""The endpoint's UDP socket: batches of datagrams in, corked sends out (GSO where the kernel has it)."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import pytest

from services.gateway.peers.udp import BatchedDatagramTransport, bind_udp


class Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.batches: list[list[tuple[bytes, Any]]] = []
        self.lost = asyncio.Event()

    def datagrams_received(self, batch: list[tuple[bytes, Any]]) -> None:
        self.batches.append(batch)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


def receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def test_what_waits_on_the_socket_arrives_as_one_batch_in_order() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        transport = BatchedDatagramTransport(bind_udp("127.0.0.1", 0), recorder)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(10):  # all queued before the loop looks at the socket
            sender.sendto(bytes([i]) * (100 + i), transport.get_extra_info("sockname"))
        for _ in range(20):
            await asyncio.sleep(0.01)
            if sum(len(b) for b in recorder.batches) == 10:
                break
        assert len(recorder.batches) == 1
        assert [data for data, _ in recorder.batches[0]] == [bytes([i]) * (100 + i) for i in range(10)]
        assert recorder.batches[0][0][1][1] == sender.getsockname()[1]  # who sent it
        transport.close()
        await asyncio.wait_for(recorder.lost.wait(), 1)
        assert transport.get_extra_info("sockname") is None
        sender.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "sizes",
    [
        [1452] * 8 + [700],  # a token's burst on a LAN: one run, shorter tail
        [1452, 1452, 300, 1452, 40],  # a short one ends a run; the next run starts after it
        [100, 1452, 1452],  # a larger one cannot follow a smaller one in a run
        [16384] * 5,  # loopback-sized: 3 fit one send (64 KiB), then two more
        [1200],
    ],
)
def test_corked_datagrams_arrive_separate_whole_and_in_order(sizes: list[int]) -> None:
    async def scenario() -> None:
        target = receiver()
        transport = BatchedDatagramTransport(bind_udp("127.0.0.1", 0), Recorder())
        sent = [bytes([i]) * size for i, size in enumerate(sizes)]
        with transport.corked():
            for data in sent:
                transport.sendto(data, target.getsockname())
            with transport.corked():  # nested: still one flush, at the outer end
                pass
            target.setblocking(False)
            with pytest.raises(BlockingIOError):
                target.recv(65535)  # nothing leaves while corked
            target.setblocking(True)
            target.settimeout(2)
        assert [target.recv(65535) for _ in sent] == sent
        transport.close()
        target.close()

    asyncio.run(scenario())


class NoGSO:
    """A socket whose kernel refuses UDP_SEGMENT, as older kernels do (EIO)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def sendmsg(self, *args: object) -> int:
        raise OSError(errno.EIO, "no GSO")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def test_a_kernel_without_gso_gets_plain_sends_and_nothing_is_lost() -> None:
    async def scenario() -> None:
        target = receiver()
        transport = BatchedDatagramTransport(bind_udp("127.0.0.1", 0), Recorder())
        transport._sock = NoGSO(transport._sock)
        sent = [bytes([i]) * 1452 for i in range(3)]
        for _ in range(2):  # the first corked run meets the refusal, the second goes plain at once
            with transport.corked():
                for data in sent:
                    transport.sendto(data, target.getsockname())
            assert [target.recv(65535) for _ in sent] == sent
        assert transport._gso is False
        transport.close()
        target.close()

    asyncio.run(scenario())

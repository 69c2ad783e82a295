"""The endpoint's UDP socket, read in batches.

asyncio's datagram transport reads one datagram per event-loop turn and aioquic answers each one
by itself (receive, events, build and send whatever is due). A token of a split model is a burst
of ~8 full-size datagrams on a LAN, so that costs 8 loop turns, 8 transmits (mostly ACKs the peer
must read too) and 8 small writes to rpc-server. Here every readable wake-up drains what the
socket holds (up to BATCH) and hands the whole batch to the protocol, which answers once.

Owns only the socket and its backlog of unsent datagrams; what a datagram means is the
protocol's business (`BatchedDatagramProtocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

BATCH = 64  # datagrams per wake-up at most: bounds the time before other tasks run (~64 x 30 us)
LARGEST_DATAGRAM = 65535
# Linux's UDP generic segmentation offload (include/uapi/linux/udp.h): one sendmsg carries many
# equal-size datagrams, the kernel cuts them. The peer still receives separate datagrams.
UDP_SEGMENT = 103
GSO_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS
GSO_BYTES = 65000  # one sendmsg stays under the 64 KiB an IP packet can carry
NO_GSO = {errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP}  # what kernels without it answer


class BatchedDatagramProtocol(Protocol):
    """What the socket hands its datagrams to."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The transport to send with."""

    def datagrams_received(self, batch: list[tuple[bytes, Any]]) -> None:
        """Every datagram one wake-up found, in arrival order: (data, sender address)."""

    def error_received(self, exc: OSError) -> None:
        """A send or receive failed (e.g. ICMP port unreachable): the socket stays open."""

    def connection_lost(self, exc: Exception | None) -> None:
        """The socket is closed."""


class BatchedDatagramTransport(asyncio.DatagramTransport):
    """A non-blocking UDP socket on the running loop; sendto() sends now or queues on EAGAIN."""

    def __init__(self, sock: socket.socket, protocol: BatchedDatagramProtocol) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._protocol = protocol
        self._backlog: deque[tuple[bytes, Any]] = deque()
        self._corked: list[tuple[bytes, Any]] | None = None
        self._gso = sys.platform == "linux"  # off for good after the first refusal (an old kernel)
        self._closing = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._read_ready)
        protocol.connection_made(self)

    def _read_ready(self) -> None:
        batch: list[tuple[bytes, Any]] = []
        for _ in range(BATCH):
            try:
                batch.append(self._sock.recvfrom(LARGEST_DATAGRAM))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as failure:
                # A previous send was refused (ICMP): the protocol decides; keep what we read.
                self._protocol.error_received(failure)
                break
        if batch:
            self._protocol.datagrams_received(batch)

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Datagrams sent inside go out together when it ends: runs of equal size to one address
        leave in one sendmsg (GSO) where the kernel can."""
        if self._corked is not None:
            yield
            return
        self._corked = []
        try:
            yield
        finally:
            held, self._corked = self._corked, None
            self._send_held(held)

    def _send_held(self, held: list[tuple[bytes, Any]]) -> None:
        start = 0
        while start < len(held):
            data, addr = held[start]
            end = start + 1
            if self._gso and not self._backlog:
                size, total = len(data), len(data)
                # Segments of one size; the last of a run may be shorter.
                while (
                    end < len(held)
                    and held[end][1] == addr
                    and len(held[end][0]) <= size
                    and end - start < GSO_SEGMENTS
                    and total + len(held[end][0]) <= GSO_BYTES
                    and len(held[end - 1][0]) == size
                ):
                    total += len(held[end][0])
                    end += 1
            if end - start > 1 and self._send_segments([d for d, _ in held[start:end]], addr, len(data)):
                start = end
                continue
            for data, addr in held[start:end]:
                self.sendto(data, addr)
            start = end

    def _send_segments(self, segments: list[bytes], addr: Any, size: int) -> bool:
        """One sendmsg for all; False when it did not go (the caller sends them one by one)."""
        try:
            self._sock.sendmsg([b"".join(segments)], [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, addr)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as failure:
            if failure.errno in NO_GSO:
                self._gso = False  # this kernel or device cannot: plain sends from now on
            return False  # otherwise (e.g. an ICMP error pending): the plain sends report it
        return True

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing:
            return
        if self._corked is not None:
            self._corked.append((bytes(data), addr))
            return
        if not self._backlog:
            try:
                self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self._sock.fileno(), self._write_ready)
            except OSError as failure:
                self._protocol.error_received(failure)
                return
        self._backlog.append((bytes(data), addr))

    def _write_ready(self) -> None:
        while self._backlog:
            data, addr = self._backlog[0]
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as failure:
                self._protocol.error_received(failure)
            self._backlog.popleft()
        self._loop.remove_writer(self._sock.fileno())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra: dict[str, Callable[[], Any]] = {"sockname": self._sock.getsockname, "socket": lambda: self._sock}
        return extra[name]() if name in extra and not self._closing else default

    def get_write_buffer_size(self) -> int:
        return sum(len(data) for data, _ in self._backlog)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._sock.fileno())
        self._loop.remove_writer(self._sock.fileno())
        self._backlog.clear()
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


def bind_udp(host: str, port: int) -> socket.socket:
    """A UDP socket bound to host:port (the first address the name resolves to, as asyncio does)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock

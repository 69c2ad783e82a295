"""The round-trip time to a node's QUIC port, measured without joining anything: one datagram out,
the endpoint's Version Negotiation packet back.

A QUIC endpoint answers a long-header packet of a version it does not speak with the versions it
does (RFC 9000 6.1), before any handshake or admission: so the time is the network's and the
node's UDP path, no secret is involved and no connection state is made on the node. The packet
is padded to 1200 bytes, the size below which a server may drop it.

Owns the probe packet, checking the answer, and the one socket of a measurement.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time

# A reserved version (RFC 9000 15: 0x?a?a?a?a): no endpoint speaks it, so every one negotiates.
PROBE_VERSION = 0x1A2A3A4A
PROBE_BYTES = 1200
CID_BYTES = 8
ATTEMPTS = 3  # datagrams sent at most, each with its own source connection id
ATTEMPT_TIMEOUT = 0.5  # seconds to wait for each answer


def probe(source_cid: bytes) -> bytes:
    """An Initial-shaped long-header packet of PROBE_VERSION, padded to PROBE_BYTES."""
    destination_cid = os.urandom(CID_BYTES)
    head = bytes([0xC0]) + struct.pack("!I", PROBE_VERSION)
    head += bytes([len(destination_cid)]) + destination_cid + bytes([len(source_cid)]) + source_cid
    head += b"\x00"  # token length 0
    payload = PROBE_BYTES - len(head) - 2  # the length field below takes 2 bytes
    return head + struct.pack("!H", 0x4000 | payload) + bytes(payload)


def answers(packet: bytes, source_cid: bytes) -> bool:
    """Whether `packet` is a Version Negotiation packet addressed to our probe's connection id."""
    if len(packet) < 7 + len(source_cid) or not packet[0] & 0x80:
        return False
    version, destination_length = struct.unpack_from("!IB", packet, 1)
    return version == 0 and packet[6 : 6 + destination_length] == source_cid


class _Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received.put_nowait((data, time.perf_counter()))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: no answer, which the timeout reports.
        pass


async def round_trip(host: str, port: int) -> float | None:
    """Seconds from a probe to its answer from host:port, or None when none came (ATTEMPTS tries)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        transport, replies = await loop.create_datagram_endpoint(_Replies, remote_addr=(host, port), family=family)
    except OSError:
        return None  # no route from here: nothing to measure
    try:
        for _ in range(ATTEMPTS):
            source_cid = os.urandom(CID_BYTES)
            sent = time.perf_counter()
            transport.sendto(probe(source_cid))
            deadline = sent + ATTEMPT_TIMEOUT
            while (left := deadline - time.perf_counter()) > 0:
                try:
                    packet, arrived = await asyncio.wait_for(replies.received.get(), left)
                except TimeoutError:
                    break
                if answers(packet, source_cid):
                    return arrived - sent
        return None
    finally:
        transport.close()

"""The RTT probe: a packet any QUIC endpoint reads as a version it must negotiate, and only that
endpoint's Version Negotiation answer to our connection id counts."""

from __future__ import annotations

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.packet import QuicPacketType, QuicProtocolVersion, encode_quic_version_negotiation, pull_quic_header

from services.gateway.discovery.ping import CID_BYTES, PROBE_BYTES, PROBE_VERSION, answers, probe

OURS = bytes(range(CID_BYTES))


def test_a_quic_endpoint_reads_the_probe_as_an_initial_of_an_unknown_version() -> None:
    packet = probe(OURS)
    header = pull_quic_header(Buffer(data=packet), host_cid_length=8)
    assert len(packet) == PROBE_BYTES
    assert header.packet_type == QuicPacketType.INITIAL and header.version == PROBE_VERSION
    assert header.source_cid == OURS and len(header.destination_cid) == CID_BYTES
    assert PROBE_VERSION not in (QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2)


def negotiation(to: bytes) -> bytes:
    return encode_quic_version_negotiation(source_cid=b"\x09" * 8, destination_cid=to, supported_versions=[QuicProtocolVersion.VERSION_1])


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (negotiation(OURS), True),
        (negotiation(b"\xff" * CID_BYTES), False),  # someone else's probe
        (negotiation(OURS)[:8], False),  # cut short
        (probe(OURS), False),  # a long header of another version: not an answer
        (b"\x40" + OURS, False),  # a short header
        (b"", False),
    ],
    ids=[
        "ours",
        "someone else's",
        "cut short",
        "a probe",
        "short header",
        "empty",
    ],  # the packets hold random bytes: named, so every worker collects the same tests
)
def test_only_a_version_negotiation_to_our_id_answers(packet: bytes, expected: bool) -> None:
    assert answers(packet, OURS) is expected

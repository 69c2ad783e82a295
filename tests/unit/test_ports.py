"""Ports for our children come from below the ephemeral ranges and are free when handed out."""

from __future__ import annotations

import socket

from services.common import ports


def test_ports_are_below_the_ephemeral_ranges_free_and_distinct() -> None:
    chosen = [ports.free_port() for _ in range(20)]
    assert all(ports.LOW <= port < ports.HIGH < 32768 for port in chosen)
    assert len(set(chosen)) == len(chosen)
    for port in chosen:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # nothing listens there


def test_a_port_in_use_is_skipped() -> None:
    port = ports.free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        ports._next = port  # noqa: SLF001 - make the taken port the next candidate
        assert ports.free_port() != port

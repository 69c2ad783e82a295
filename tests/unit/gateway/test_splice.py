"""The QUIC side of a spliced RPC tunnel (tunnel/rpc.py Splice) against a local socket that is gone."""

from __future__ import annotations

import asyncio
import errno

from services.gateway.tunnel.rpc import Splice


class ResetSocket(asyncio.Transport):
    """A TCP transport whose peer reset it before asyncio noticed: half-closing fails."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def is_closing(self) -> bool:
        return self.aborted

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    def abort(self) -> None:
        self.aborted = True


def test_the_end_of_a_stream_to_a_reset_socket_aborts_it_without_raising() -> None:
    async def scenario() -> ResetSocket:
        splice = Splice()
        transport = ResetSocket()
        splice.connection_made(transport)
        splice.stream_data(b"last answer", end=True)  # raised into the UDP socket's callback before
        return transport

    transport = asyncio.run(scenario())
    assert transport.written == [b"last answer"] and transport.aborted

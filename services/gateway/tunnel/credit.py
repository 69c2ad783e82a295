"""Credit on an HTTP tunnel: how many response bytes the server may have sent that the
requester's consumer has not taken yet. Pure counting and the credit frame's bytes; the streams
are client.py's and server.py's.

Why our own credit rather than QUIC's flow control: aioquic (1.7) gives a sender no back-pressure
(its stream writers' drain() returns at once and send_stream_data buffers without limit) and
raises a receiver's stream credit whenever half of it has *arrived*, not when the application has
*read* it. So neither side's buffer is bounded by QUIC: a client that stops reading makes the
serving node buffer the whole answer. With a credit the requester grants only for bytes its
consumer took, the server stops reading from llama-server once WINDOW_BYTES are outstanding;
llama-server's own socket then fills, and its generation waits. Both nodes then hold at most a
window (plus one chunk) of the answer, whatever the client does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Outstanding response bytes per tunnel stream: ~1000 tokens of SSE. A window is sent in a few
# round trips on a LAN, and a token stream (a few hundred bytes a token) never fills it unless
# its client stops reading.
WINDOW_BYTES = 256 * 1024
CREDIT_STEP = WINDOW_BYTES // 4  # the requester grants in steps: a frame per 64 KiB, not per token
CHUNK_BYTES = 64 * 1024  # a server sends at most this much past a full window
# Seconds a server waits for a grant before it gives the stream up: a requester that takes
# nothing for this long is gone (it resets the stream when it leaves; this is for when it cannot).
CREDIT_WAIT_SECONDS = 300.0
_CREDIT = struct.Struct("!I")
CREDIT_FRAME_BYTES = _CREDIT.size


def encode_credit(size: int) -> bytes:
    return _CREDIT.pack(size)


def decode_credit(frame: bytes) -> int:
    (size,) = _CREDIT.unpack(frame)
    return size


@dataclass
class Credits:
    """The requester's side: bytes its consumer took that it has not granted yet."""

    step: int
    untold: int = 0

    def taken(self, size: int) -> int:
        """The consumer took `size` bytes: what to grant now (0: wait for more)."""
        self.untold += size
        if self.untold < self.step:
            return 0
        grant, self.untold = self.untold, 0
        return grant


@dataclass
class Window:
    """The server's side: bytes sent against bytes granted."""

    size: int
    sent: int = 0
    granted: int = 0

    @property
    def outstanding(self) -> int:
        return self.sent - self.granted

    def full(self) -> bool:
        """True while the server must wait for a grant before sending more."""
        return self.outstanding >= self.size

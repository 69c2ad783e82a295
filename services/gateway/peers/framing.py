"""Stream framing on QUIC: a typed header opens each stream, then length-prefixed frames.

Encoding and decoding (a tunnel stream's JSON head too), and reading one frame off a stream's
reader (read_frame); opening streams and serving them are endpoint.py's. Every stream starts with
one byte naming its kind, so one connection carries admission, gossip, HTTP tunnels and RPC tunnels.
"""

from __future__ import annotations

import enum
import json
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asyncio import StreamReader

MAX_FRAME_BYTES = 1 << 20  # a gossip or admission frame is a few KB; 1 MiB is generous
_LENGTH = struct.Struct("!I")


class StreamKind(enum.IntEnum):
    ADMISSION = 1
    GOSSIP = 2
    HTTP = 3  # a relayed HTTP request (routing issue)
    RPC = 4  # a raw byte tunnel to an rpc-server (pipeline issue)
    PAIRING = 5  # a new node asking to join (the one stream served before admission)


class FrameError(Exception):
    """A peer sent bytes that break the framing; the connection is closed."""


def encode_frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(payload)} bytes is over the {MAX_FRAME_BYTES} limit")
    return _LENGTH.pack(len(payload)) + payload


def frame_length(header: bytes) -> int:
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"peer announced a frame of {length} bytes (limit {MAX_FRAME_BYTES})")
    return length


def stream_kind(byte: bytes) -> StreamKind:
    try:
        return StreamKind(byte[0])
    except (ValueError, IndexError):
        raise FrameError(f"unknown stream kind {byte!r}") from None


HEADER_BYTES = _LENGTH.size


async def read_frame(reader: StreamReader) -> bytes:
    """One length-prefixed frame (FrameError when the peer announces one over the limit)."""
    length = frame_length(await reader.readexactly(HEADER_BYTES))
    return await reader.readexactly(length)


def json_head(frame: bytes) -> dict[str, Any]:
    """A tunnel stream's head, a JSON object (FrameError for anything else: the peer is broken)."""
    try:
        head = json.loads(frame)
    except (ValueError, RecursionError) as bad:  # RecursionError: arrays nested past Python's limit fit in a frame
        raise FrameError(f"stream head is not JSON: {bad}") from None
    if not isinstance(head, dict):
        raise FrameError("stream head is not a JSON object")
    return head

"""What the parser properties share: one reproducible profile and the hostile inputs they feed.

FUZZ: derandomized and without an example database, so `make test` runs the same examples on every
machine; no deadline (a loaded CI machine is slow, not wrong), hangs are caught by the module
timeouts instead. `mutated(valid)` edits valid bytes the ways a damaged file or a broken peer
does: flipped bytes, cut ranges, inserted garbage, truncation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


# Any JSON document, as json.loads returns it (NaN and infinities included: Python's json reads them).
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


def deeply_nested(depth: int = 100_000) -> bytes:
    """JSON nested past the interpreter's recursion limit: json.loads raises RecursionError."""
    return b"[" * depth + b"]" * depth


@st.composite
def mutated(draw: st.DrawFn, valid: bytes, edits: int = 4) -> bytes:
    """`valid` with a few edits anywhere in it."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, edits))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(("flip", "cut", "insert", "truncate")))
        if edit == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "cut":
            del data[at : at + draw(st.integers(1, 16))]
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "truncate":
            del data[at:]
    return bytes(data)


def run(coroutine: Callable[[], Awaitable[Any]], seconds: float = 10.0) -> Any:
    """Run one async step to its end; a hang fails as TimeoutError after `seconds`."""

    async def bounded() -> Any:
        async with asyncio.timeout(seconds):
            return await coroutine()

    return asyncio.run(bounded())


class Writer:
    """A stream writer that keeps what is written (what a peer would receive)."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def write_eof(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    async def drain(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return 0 if name == "stream_id" else default


def reader_of(data: bytes) -> asyncio.StreamReader:
    """A stream reader holding `data`, then the end of the stream (inside a running loop)."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader

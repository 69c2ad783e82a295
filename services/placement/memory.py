"""Memory arithmetic shared by placement's decisions: what a model needs to run. Pure."""

from __future__ import annotations

GIB = 1024**3


def memory_needed(size_bytes: int, headroom: float, context_bytes: int) -> int:
    """Bytes a model needs to run: its weights with headroom, plus its context."""
    return int(size_bytes * (1 + headroom)) + context_bytes

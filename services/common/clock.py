"""The wall clock of the services, and a test hook that makes one node's clock jump.

Every wall-clock reading of the services (record and demand times, blackboard posts, credentials,
listings) is `now()`. With MESH_NODE_CLOCK_OFFSET_FILE naming a file, `now()` is the machine's time
plus the seconds the file holds (read again at most every 0.2 s; missing or unreadable: no offset),
so a chaos test (bench/chaos.py) moves one node's clock while the other nodes on the same machine
keep the real one. Only our readings move, as a real jump moves the wall clock and nothing else:
the monotonic clock behind timeouts, SWIM's probes and asyncio's timers stays, and so do the
libraries' own readings (gRPC computes its deadlines from the wall clock and checks them in C
against the machine's: shifting those would expire every call, which no real jump does). Unset
(every real node): the machine's time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

VARIABLE = "MESH_NODE_CLOCK_OFFSET_FILE"
REREAD_S = 0.2

_offset_file = Path(os.environ[VARIABLE]) if os.environ.get(VARIABLE) else None
_offset, _read_at = 0.0, float("-inf")


def now() -> float:
    """Unix time, as this node's wall clock says."""
    if _offset_file is None:
        return time.time()
    return time.time() + _current_offset()


def _current_offset() -> float:
    global _offset, _read_at
    if _offset_file is None:
        return 0.0
    checked = time.monotonic()
    if checked - _read_at >= REREAD_S:
        _read_at = checked
        try:
            _offset = float(_offset_file.read_text().strip() or 0)
        except (OSError, ValueError):
            _offset = 0.0
    return _offset


def hooked() -> bool:
    """Whether a test hook offsets this node's clock."""
    return _offset_file is not None

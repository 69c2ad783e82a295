"""Free loopback TCP ports for our own services and children, chosen below the ephemeral ranges.

A port found free is only promised until someone else binds it, and our children bind theirs a
second or so later. With the kernel's choice (`bind(("", 0))`) the port comes from the ephemeral
range, where every outgoing connection on the machine also takes its local port: CI saw a node's
metrics port taken in that window. Ports in [LOW, HIGH) are below Linux's (32768+) and macOS's
(49152+) ephemeral ranges, so no outgoing connection ever holds one. Each process walks the range
from its own random start, so nodes starting at once seldom pick the same ports.
"""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20000, 32000
_next = random.randrange(LOW, HIGH)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on now (the kernel's choice if the range is full)."""
    global _next
    for _ in range(HIGH - LOW):
        port, _next = _next, LOW + (_next + 1 - LOW) % (HIGH - LOW)
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:  # someone listens there (or just did): try the next one
                continue
            return port
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]

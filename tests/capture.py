"""A packet capture of the test's own (no tcpdump here): every frame seen on one interface of a
network namespace, appended raw to a file until the capture is stopped. Searching the bytes for a
secret is enough: whatever crossed the LAN in clear is in them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.netns import Namespace

CAPTURE = """
import socket, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL: every protocol
sock.bind((sys.argv[1], 0))
with open(sys.argv[2], "ab", buffering=0) as out:
    print("capturing", flush=True)
    while True:
        out.write(sock.recv(65535))
"""


@contextmanager
def captured(ns: Namespace, path: Path) -> Iterator[Path]:
    """Capture `ns`'s LAN interface into `path` while the block runs (both directions)."""
    process = subprocess.Popen(ns.argv(sys.executable, "-c", CAPTURE, ns.interface, str(path)), stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "capturing", "the capture did not start"
        yield path
    finally:
        process.terminate()
        process.wait(10)

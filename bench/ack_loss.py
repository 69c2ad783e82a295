#!/usr/bin/env python3
"""Benchmark: a token's round trip through a real tunnel when datagrams get lost, with aioquic's
ACKs (as shipped) and with ACKs riding on data (services/gateway/peers/acks.py, off by default).

Two endpoints in this process (tests/integration/test_rpc_tunnel.py's counted_tunnel), a server on
the worker that answers each 11 KB burst with 8 KB after 3 ms (compute), LAN-sized datagrams
(1452 B: a burst is 8 of them). On every fourth turn after the warm-up the worker drops the third
datagram of the burst (~3% of datagrams). Rows: median turn time of the turns with a loss and of
the turns between them.

Env: BENCH_TURNS (100).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.gateway.peers import endpoint as peers
from services.gateway.peers.acks import ACK_DELAY
from tests.integration.test_rpc_tunnel import counted_tunnel

BURST, ANSWER, WARM_UP = 11_000, 8_192, 20
TURNS = int(os.environ.get("BENCH_TURNS", "100"))
DROP = {"on": False, "seen": 0}


def dropping(receive):
    def datagram_received(self, data: bytes, addr: object) -> None:
        if DROP["on"] and len(data) > 1000 and not self._quic.configuration.is_client:  # the worker, data datagrams
            DROP["seen"] += 1
            if DROP["seen"] == 3:
                return
        receive(self, data, addr)

    return datagram_received


async def compute_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Cancelled when the tunnel closes at the end of a row: that is this server's normal end.
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        while True:
            await reader.readexactly(BURST)
            await asyncio.sleep(0.003)
            writer.write(b"a" * ANSWER)


async def turns(ack_delay: float) -> tuple[list[float], list[float]]:
    """(turn times between losses, turn times with a loss) in ms."""
    clean, lossy = [], []
    async with counted_tunnel(Path(tempfile.mkdtemp(prefix="mesh-bench-")), compute_then_answer, 1452, ack_delay) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for turn in range(WARM_UP + TURNS):
            DROP.update(on=turn >= WARM_UP and turn % 4 == 0, seen=0)
            started = time.perf_counter()
            writer.write(os.urandom(BURST))
            await reader.readexactly(ANSWER)
            if turn >= WARM_UP:
                (lossy if DROP["on"] else clean).append((time.perf_counter() - started) * 1000)
            DROP["on"] = False
            await asyncio.sleep(0.005)
        writer.close()
    return clean, lossy


def main() -> int:
    peers.MeshConnection.datagram_received = dropping(peers.MeshConnection.datagram_received)
    print(f"\n{TURNS} turns of an {BURST} B burst and an {ANSWER} B answer, 1452-byte datagrams, one datagram lost every 4th turn")
    print("| ACKs | turns between losses, median ms | turns with a loss, median ms | max ms |")
    print("|---|---|---|---|")
    for name, delay in (("aioquic's (as shipped)", 0.0), (f"riding on data ({ACK_DELAY * 1000:.0f} ms)", ACK_DELAY)):
        clean, lossy = asyncio.run(turns(delay))
        print(f"| {name} | {statistics.median(clean):.2f} | {statistics.median(lossy):.2f} | {max(lossy):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

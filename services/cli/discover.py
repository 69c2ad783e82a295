"""`mesh-llm discover`: the meshes announced on the LAN (mDNS) and listed on Nostr, as tables.

Browses the LAN for BROWSE_SECONDS and, meanwhile, reads the public directory from the relays
(--relay, else the gateway's relays setting), then prints each LAN mesh with its nodes, models,
memory and RTT, and each public mesh with its listing. The RTT is the round trip of one QUIC
datagram to the nearest node's port (its Version Negotiation answer: services/gateway/discovery/
ping.py), not the mDNS answer's delay. Everything shown comes from announcements and listings
anyone could have sent: it is what they claim, not what was proven; listings that do not read
right (unsigned, expired, malformed, full...) are counted by reason, never shown.

Owns the command's output; browsing, reading relays and checking what they say are the gateway's
discovery package's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from zeroconf import Error

from services.cli.flags import UsageError, check_relays, relays_of
from services.gateway.discovery.announcement import LanMesh, LanScan
from services.gateway.discovery.lan import browse
from services.gateway.discovery.listing import Listing
from services.gateway.discovery.nostr import Directory, RelayError, read_directory

# Seconds of listening: a node answers a query within a second on a LAN (RFC 6762 delays answers
# by at most 500 ms), with room for a lost packet and the browser's second query.
BROWSE_SECONDS = 3.0
# Seconds for the relays (connect, then read), in parallel with the browse: a relay that has not
# answered by then is named as silent, not waited for.
DIRECTORY_SECONDS = 3.0
NODES_SHOWN = 4  # node names per mesh at most, then "+N"


def run(args: argparse.Namespace) -> int:
    if args.command[1:]:
        raise UsageError("usage: mesh-llm discover [--relay URL]... (lists the meshes announced on the LAN and listed on Nostr)")
    check_relays(args.relay)
    relays = relays_of(args)
    try:
        scan, directory = asyncio.run(_discover(relays, time.time()))
    except RelayError as bad:
        raise UsageError(f"--relay: {bad}") from None
    if isinstance(scan, BaseException):
        print(directory_report(directory))
        print(f"mesh-llm: error: cannot browse the LAN over mDNS: {scan}", file=sys.stderr)
        return 1
    print(report(scan))
    print(directory_report(directory))
    return 0


async def _discover(relays: list[str], now: float) -> tuple[LanScan | OSError | Error, Directory]:
    """The LAN's announcements and the relays' listings, both read at once (as long as the slower)."""
    lan = asyncio.ensure_future(browse(BROWSE_SECONDS))
    directory = await read_directory(relays, DIRECTORY_SECONDS, now)
    try:
        return await lan, directory
    except (OSError, Error) as failure:
        return failure, directory


def report(scan: LanScan) -> str:
    lines = [table(scan.meshes) if scan.meshes else "no meshes found on the LAN"]
    if scan.ignored:
        lines.append(f"ignored {scan.ignored} announcement{'s' if scan.ignored > 1 else ''} that did not read right: {'; '.join(sorted(set(scan.reasons)))}")
    return "\n".join(lines)


def directory_report(directory: Directory) -> str:
    """The public meshes, the listings ignored by reason, and which relays did not answer."""
    reading = directory.reading
    silent = [url for url in directory.relays if url not in directory.answered]
    if not directory.relays:
        return "public directory: no relays set"
    if reading.listings:
        lines = [f"public meshes ({len(directory.answered)} of {len(directory.relays)} relays answered):", public_table(reading.listings)]
    elif silent and not directory.answered:
        lines = [f"public directory: no relay answered ({', '.join(silent)})"]
    else:
        lines = [f"no public meshes on {', '.join(directory.answered)}"]
    ignored = sum(reading.rejected.values())
    if ignored:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(reading.rejected.items()))
        lines.append(f"ignored {ignored} listing{'s' if ignored > 1 else ''}: {reasons}")
    if silent and directory.answered:
        lines.append(f"no answer from {', '.join(silent)}")
    return "\n".join(lines)


def public_table(listings: tuple[Listing, ...]) -> str:
    rows = [("mesh", "name", "region", "nodes", "clients", "models", "wanted", "memory", "version")]
    rows += [
        (
            listing.mesh_id,
            listing.name or "-",
            listing.region or "-",
            str(listing.node_count),
            f"{listing.client_count}/{listing.max_clients}" if listing.max_clients else str(listing.client_count),
            ", ".join(listing.served) or "-",
            ", ".join(listing.wanted) or "-",
            f"{listing.memory_bytes / 1e9:.1f} GB",
            listing.version,
        )
        for listing in listings
    ]
    return _aligned(rows)


def table(meshes: tuple[LanMesh, ...]) -> str:
    rows = [("mesh", "name", "nodes", "models", "memory", "RTT")]
    rows += [(mesh.mesh_id, mesh.mesh_name or "-", _nodes(mesh), _models(mesh), f"{mesh.memory_bytes / 1e9:.1f} GB", _rtt(mesh.rtt)) for mesh in meshes]
    return _aligned(rows)


def _aligned(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)


def _nodes(mesh: LanMesh) -> str:
    names = [node.announcement.node_name or node.announcement.node_id for node in mesh.nodes]
    more = len(names) - NODES_SHOWN
    return ", ".join(names[:NODES_SHOWN]) + (f" +{more}" if more > 0 else "")


def _models(mesh: LanMesh) -> str:
    more = mesh.models_total - len(mesh.models)
    listed = ", ".join(mesh.models) or "-"
    return listed + (f" (+{more} more)" if more > 0 else "")


def _rtt(rtt: float | None) -> str:
    return "no answer" if rtt is None else f"{rtt * 1000:.1f} ms"

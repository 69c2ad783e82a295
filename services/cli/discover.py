"""`mesh-llm discover`: the meshes announced on the LAN (mDNS), as a table.

Browses for BROWSE_SECONDS, then prints each mesh with its nodes, models, memory and RTT. The RTT
is the round trip of one QUIC datagram to the nearest node's port (its Version Negotiation answer:
services/gateway/discovery/ping.py), not the mDNS answer's delay. Everything shown comes from
announcements anyone on the LAN could have sent: it is what they claim, not what was proven.

Owns the command's output; browsing and checking announcements are the gateway's discovery package's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from zeroconf import Error

from services.cli.flags import UsageError
from services.gateway.discovery.announcement import LanMesh, LanScan
from services.gateway.discovery.lan import browse

# Seconds of listening: a node answers a query within a second on a LAN (RFC 6762 delays answers
# by at most 500 ms), with room for a lost packet and the browser's second query.
BROWSE_SECONDS = 3.0
NODES_SHOWN = 4  # node names per mesh at most, then "+N"


def run(args: argparse.Namespace) -> int:
    if args.command[1:]:
        raise UsageError("usage: mesh-llm discover (lists the meshes announced on the LAN)")
    try:
        scan = asyncio.run(browse(BROWSE_SECONDS))
    except (OSError, Error) as failure:
        print(f"mesh-llm: error: cannot browse the LAN over mDNS: {failure}", file=sys.stderr)
        return 1
    print(report(scan))
    return 0


def report(scan: LanScan) -> str:
    lines = [table(scan.meshes) if scan.meshes else "no meshes found on the LAN"]
    if scan.ignored:
        lines.append(f"ignored {scan.ignored} announcement{'s' if scan.ignored > 1 else ''} that did not read right: {'; '.join(sorted(set(scan.reasons)))}")
    return "\n".join(lines)


def table(meshes: tuple[LanMesh, ...]) -> str:
    rows = [("mesh", "name", "nodes", "models", "memory", "RTT")]
    rows += [(mesh.mesh_id, mesh.mesh_name or "-", _nodes(mesh), _models(mesh), f"{mesh.memory_bytes / 1e9:.1f} GB", _rtt(mesh.rtt)) for mesh in meshes]
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

"""The console's status document: a pure function of the mesh view."""

from __future__ import annotations

from dataclasses import asdict

from services.common.records import MeshView, NodeRecord


def node_status(record: NodeRecord) -> dict:
    return {
        "id": record.node_id,
        "name": record.name,
        "role": record.role,
        "memory_offered_bytes": record.memory_offered_bytes,
        "models": [asdict(served) for served in record.served],
        "assignments": [asdict(assignment) for assignment in record.assignments],
        "version": record.version,
    }


def status(view: MeshView) -> dict:
    """What /api/status answers and every /api/events status event carries."""
    own = node_status(view.own)
    return {**own, "node": own, "peers": [node_status(peer) for peer in view.peers]}

"""The console's status document: a pure function of the mesh view."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from services.common.invite import InviteToken
from services.common.records import Assignment, Device, DownloadState, MeshView, NodeRecord, Peer, ProcessKind, ProcessState, Role


def shown_role(record: NodeRecord) -> str:
    """client | standby | downloading | loading | serving: what the node is doing now (loading while
    a model it answers for is still starting, downloading while it serves nothing yet and fetches one)."""
    if record.role == Role.SERVING and any(s.kind == ProcessKind.LLAMA_SERVER and s.state == ProcessState.STARTING for s in record.served):
        return Role.LOADING
    if record.role == Role.STANDBY and any(d.state != DownloadState.DONE for d in record.downloads):
        return Role.DOWNLOADING
    return record.role


def assignment_status(assignment: Assignment) -> dict[str, Any]:
    """An assignment as the console shows it: a split's TLS key never, only whether it has one."""
    shown = asdict(assignment)
    shown["rpc_tls"] = bool(shown.pop("rpc_key"))
    return shown


def device_status(device: Device) -> dict:
    # Used: in use when the runner listed it (at its start, before it loaded a model).
    return {**asdict(device), "used_bytes": device.used_bytes}


def node_status(record: NodeRecord) -> dict:
    return {
        "id": record.node_id,
        "name": record.name,
        "role": shown_role(record),
        "memory_offered_bytes": record.memory_offered_bytes,
        "devices": [device_status(device) for device in record.devices],  # its GPUs; none: it runs models from RAM
        "models_on_disk": list(record.models_on_disk),
        "model_files": [asdict(file) for file in record.model_files],  # each model's file fingerprint
        "models": [asdict(served) for served in record.served],
        "assignments": [assignment_status(assignment) for assignment in record.assignments],
        "downloads": [asdict(download) for download in record.downloads],  # from the Hub: progress in bytes
        "download_policy": record.download_policy,
        "version": record.version,
    }


def peer_status(peer: Peer) -> dict:
    return {**node_status(peer.record), "address": peer.address, "state": peer.status, "rtt_ms": round(peer.rtt * 1000, 2)}


def invite_token(view: MeshView, fingerprint: str, addresses: tuple[str, ...] = ()) -> str:
    """The token that joins this mesh through this node, at every address given (else gossip's);
    '' until gossip has reported the mesh."""
    bootstrap = addresses or ((view.address,) if view.address else ())
    if not (view.mesh_id and view.secret and bootstrap):
        return ""
    return InviteToken(view.mesh_id, view.secret, bootstrap, fingerprint).encode()


def status(view: MeshView, fingerprint: str, metrics: dict[str, str] | None = None, *, with_token: bool = False, addresses: tuple[str, ...] = ()) -> dict:
    """What /api/status answers and every /api/events status event carries (`with_token`: for a
    client on this machine only)."""
    own = node_status(view.own)
    return {
        "metrics": metrics or {},
        **own,
        "node": own,
        "mesh_id": view.mesh_id,
        "address": view.address,
        "token": invite_token(view, fingerprint, addresses) if with_token else "",
        "join_error": view.join_error,
        "join_state": view.join_state,
        "peers": [peer_status(peer) for peer in view.peers],
        "demand": [asdict(demand) for demand in view.demand],
        # Nodes asking to join by pairing: the code both machines show, for a member to approve.
        "pairing": [{"code": p.code, "node_id": p.node_id, "name": p.name, "via": p.via, "requested_at": p.requested_at} for p in view.pairing],
        "credential": "member" if view.secret else ("paired" if view.credential and not view.signing_key else ("public" if view.credential else "")),
    }

"""Converting mesh records between domain types and protobuf, used at every servicer edge."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from services.common.records import (
    Assignment,
    Device,
    Download,
    DownloadPolicy,
    DownloadState,
    JoinState,
    MeshView,
    Mode,
    ModelDemand,
    ModelFile,
    NodeRecord,
    PairingRequest,
    Peer,
    PeerStatus,
    ProcessKind,
    ProcessState,
    Publicity,
    Role,
    SelfUpdate,
    ServedModel,
)
from services.proto.mesh.v1 import gossip_pb2, node_pb2, peer_pb2

_STATE_NAMES = {
    node_pb2.PROCESS_STATE_STARTING: ProcessState.STARTING,
    node_pb2.PROCESS_STATE_READY: ProcessState.READY,
    node_pb2.PROCESS_STATE_FAILED: ProcessState.FAILED,
    node_pb2.PROCESS_STATE_STOPPED: ProcessState.STOPPED,
}
_STATE_NUMBERS = {name: number for number, name in _STATE_NAMES.items()}


def served_from_proto(message: node_pb2.ServedModel) -> ServedModel:
    return ServedModel(
        model_id=message.model_id,
        path=message.path,
        state=_STATE_NAMES.get(message.state, ProcessState.STOPPED),
        port=message.port,
        restarts=message.restarts,
        last_error=message.last_error,
        retry_at=message.retry_at,
        size_bytes=message.size_bytes,
        kind=ProcessKind(message.kind or ProcessKind.LLAMA_SERVER),
        fingerprint=message.fingerprint,
        slots=message.slots,
        host=message.host,
    )


def served_to_proto(served: ServedModel) -> node_pb2.ServedModel:
    return node_pb2.ServedModel(
        model_id=served.model_id,
        path=served.path,
        state=_STATE_NUMBERS[served.state],
        port=served.port,
        restarts=served.restarts,
        last_error=served.last_error,
        retry_at=served.retry_at,
        size_bytes=served.size_bytes,
        kind=served.kind,
        fingerprint=served.fingerprint,
        slots=served.slots,
        host=served.host,
    )


def files_from_proto(files: Iterable[node_pb2.ModelFile]) -> tuple[ModelFile, ...]:
    return tuple(ModelFile(file.model_id, file.fingerprint) for file in files)


def files_to_proto(files: tuple[ModelFile, ...]) -> list[node_pb2.ModelFile]:
    return [node_pb2.ModelFile(model_id=file.model_id, fingerprint=file.fingerprint) for file in files]


def downloads_from_proto(downloads: Iterable[node_pb2.Download]) -> tuple[Download, ...]:
    return tuple(Download(d.model_id, DownloadState(d.state), d.done_bytes, d.total_bytes, d.error, d.retry_at) for d in downloads)


def downloads_to_proto(downloads: tuple[Download, ...]) -> list[node_pb2.Download]:
    return [
        node_pb2.Download(model_id=d.model_id, state=d.state, done_bytes=d.done_bytes, total_bytes=d.total_bytes, error=d.error, retry_at=d.retry_at)
        for d in downloads
    ]


def devices_from_proto(devices: Iterable[node_pb2.Device]) -> tuple[Device, ...]:
    return tuple(Device(d.name, d.description, d.total_bytes, d.free_bytes) for d in devices)


def devices_to_proto(devices: tuple[Device, ...]) -> list[node_pb2.Device]:
    return [node_pb2.Device(name=d.name, description=d.description, total_bytes=d.total_bytes, free_bytes=d.free_bytes) for d in devices]


def publicity_from_proto(message: node_pb2.Publicity) -> Publicity:
    return Publicity(message.mesh_name, message.region, message.max_clients, message.publish, message.origin)


def publicity_to_proto(publicity: Publicity) -> node_pb2.Publicity:
    return node_pb2.Publicity(
        mesh_name=publicity.mesh_name, region=publicity.region, max_clients=publicity.max_clients, publish=publicity.publish, origin=publicity.origin
    )


def assignment_from_proto(message: node_pb2.Assignment) -> Assignment:
    return Assignment(
        model_id=message.model_id,
        mode=Mode(message.mode),
        reason=message.reason,
        host=message.host,
        workers=tuple(message.workers),
        layers=tuple(message.layers),
        promoted=message.promoted,
        shards=tuple((shard.node_id, experts_from_proto(shard.layers)) for shard in message.shards),
        source=message.source,
        rpc_key=message.rpc_key,
    )


def assignment_to_proto(assignment: Assignment) -> node_pb2.Assignment:
    return node_pb2.Assignment(
        model_id=assignment.model_id,
        mode=assignment.mode,
        reason=assignment.reason,
        host=assignment.host,
        workers=list(assignment.workers),
        layers=list(assignment.layers),
        promoted=assignment.promoted,
        shards=[node_pb2.Shard(node_id=node, layers=experts_to_proto(layers)) for node, layers in assignment.shards],
        source=assignment.source,
        rpc_key=assignment.rpc_key,
    )


def experts_to_proto(layers: tuple[tuple[int, ...], ...]) -> list[node_pb2.ExpertList]:
    return [node_pb2.ExpertList(experts=list(layer)) for layer in layers]


def experts_from_proto(layers: Iterable[node_pb2.ExpertList]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(layer.experts) for layer in layers)


def record_from_proto(message: node_pb2.NodeRecord) -> NodeRecord:
    return NodeRecord(
        node_id=message.node_id,
        name=message.name,
        role=Role(message.role or Role.STANDBY),
        memory_offered_bytes=message.memory_offered_bytes,
        models_on_disk=tuple(message.models_on_disk),
        served=tuple(served_from_proto(s) for s in message.served),
        assignments=tuple(assignment_from_proto(a) for a in message.assignments),
        version=message.version,
        updated_at=message.updated_at,
        model_files=files_from_proto(message.model_files),
        downloads=downloads_from_proto(message.downloads),
        download_policy=DownloadPolicy(message.download_policy or DownloadPolicy.NEVER),
        publicity=publicity_from_proto(message.publicity),
        devices=devices_from_proto(message.devices),
        rpc_tls=message.rpc_tls,
    )


def record_to_proto(record: NodeRecord) -> node_pb2.NodeRecord:
    return node_pb2.NodeRecord(
        node_id=record.node_id,
        name=record.name,
        role=record.role,
        memory_offered_bytes=record.memory_offered_bytes,
        models_on_disk=list(record.models_on_disk),
        served=[served_to_proto(s) for s in record.served],
        assignments=[assignment_to_proto(a) for a in record.assignments],
        version=record.version,
        updated_at=record.updated_at,
        model_files=files_to_proto(record.model_files),
        downloads=downloads_to_proto(record.downloads),
        download_policy=record.download_policy,
        publicity=publicity_to_proto(record.publicity),
        devices=devices_to_proto(record.devices),
        rpc_tls=record.rpc_tls,
    )


def update_to_proto(update: SelfUpdate) -> gossip_pb2.SelfUpdate:
    # Each value has its NodeRecord field's type (apply_update sets them on the record as they are).
    values = update.values
    return gossip_pb2.SelfUpdate(
        fields=sorted(update.fields),
        role=str(values.get("role", "")),
        memory_offered_bytes=cast(int, values.get("memory_offered_bytes", 0)),
        models_on_disk=cast("tuple[str, ...]", values.get("models_on_disk", ())),
        served=[served_to_proto(s) for s in cast("tuple[ServedModel, ...]", values.get("served", ()))],
        assignments=[assignment_to_proto(a) for a in cast("tuple[Assignment, ...]", values.get("assignments", ()))],
        model_files=files_to_proto(cast("tuple[ModelFile, ...]", values.get("model_files", ()))),
        downloads=downloads_to_proto(cast("tuple[Download, ...]", values.get("downloads", ()))),
        download_policy=str(values.get("download_policy", "")),
        devices=devices_to_proto(cast("tuple[Device, ...]", values.get("devices", ()))),
        rpc_tls=bool(values.get("rpc_tls", False)),
    )


def update_from_proto(message: gossip_pb2.SelfUpdate) -> SelfUpdate:
    values: dict[str, object] = {
        "role": Role(message.role) if message.role else "",
        "memory_offered_bytes": message.memory_offered_bytes,
        "models_on_disk": tuple(message.models_on_disk),
        "served": tuple(served_from_proto(s) for s in message.served),
        "assignments": tuple(assignment_from_proto(a) for a in message.assignments),
        "model_files": files_from_proto(message.model_files),
        "downloads": downloads_from_proto(message.downloads),
        "download_policy": DownloadPolicy(message.download_policy or DownloadPolicy.NEVER),
        "devices": devices_from_proto(message.devices),
        "rpc_tls": message.rpc_tls,
    }
    fields = frozenset(message.fields)
    return SelfUpdate(fields=fields, values={name: values[name] for name in fields if name in values})


def view_from_proto(message: gossip_pb2.MeshView) -> MeshView:
    peers = tuple(Peer(record_from_proto(p.record), p.address, PeerStatus(p.status), p.rtt) for p in message.peers)
    return MeshView(
        own=record_from_proto(message.self),
        peers=peers,
        mesh_id=message.mesh.mesh_id,
        secret=message.mesh.secret,
        secret_version=message.mesh.secret_version,
        address=message.address,
        join_error=message.join_error,
        gossip_rounds=message.gossip_rounds,
        join_state=JoinState(message.join_state),
        demand=tuple(ModelDemand(d.model_id, d.requests, d.recent, d.last_seen, d.pinned) for d in message.demand),
        credential=message.mesh.credential,
        signing_key=message.mesh.signing_key,
        authority=message.mesh.authority,
        revoked=frozenset(message.revoked),
        pairing=tuple(pairing_from_proto(p) for p in message.pairing),
        paired=tuple(message.paired),
    )


def pairing_to_proto(request: PairingRequest) -> peer_pb2.PairingRequest:
    return peer_pb2.PairingRequest(
        code=request.code, node_id=request.node_id, name=request.name, public_key=request.public_key, via=request.via, requested_at=request.requested_at
    )


def pairing_from_proto(message: peer_pb2.PairingRequest) -> PairingRequest:
    return PairingRequest(message.code, message.node_id, message.name, message.public_key, message.via, message.requested_at)


def demand_to_proto(demand: ModelDemand) -> gossip_pb2.ModelDemand:
    return gossip_pb2.ModelDemand(model_id=demand.model_id, requests=demand.requests, recent=demand.recent, last_seen=demand.last_seen, pinned=demand.pinned)

"""The processes a decision needs on this node, and the runner calls that make the runner run
exactly those: only the difference between what is wanted and what the runner reports.

A process is asked for again when the request changed (a split's endpoints, a shard's experts), or
when the runner does not report it alive (it failed, or the runner restarted and runs nothing);
the runner keeps a process it already runs as asked. A split's host waits until every worker's
rpc-server is ready in gossip and its tunnel is open, and meanwhile keeps what it runs (a solo
llama-server serves on until the split can take over). Pure: must not import grpc or asyncio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.common import devices as accelerators
from services.common.records import Assignment, MeshView, Mode, NodeRecord, ProcessKind, ProcessState, ServedModel
from services.placement.actions import Action, OpenTunnel, Serve, ServeRpc, Stop
from services.placement.facts import Facts, Key, LlamaRequest, LocalModel, Request, RpcRequest

ALIVE = frozenset({ProcessState.STARTING, ProcessState.READY})


@dataclass(frozen=True)
class Wanted:
    """What one assignment needs: a request, or (a host waiting) the process kept as it is."""

    request: Request | None = None
    kept: Key | None = None
    tunnels: tuple[OpenTunnel, ...] = ()


def process_actions(view: MeshView, facts: Facts, assignments: Sequence[Assignment]) -> tuple[Action, ...]:
    """Stops first (memory freed before models load), then tunnels, then serves."""
    models_dir = str(facts.settings.models_dir)
    parts = [
        wanted(view, facts.tunnels, assignment, model, facts.drafts.get(assignment.model_id, ""), models_dir)
        for assignment in assignments
        if (model := model_of(view, facts, assignment)) is not None
    ]
    requests = {part.request.key: part.request for part in parts if part.request is not None}
    kept = {part.kept for part in parts if part.kept is not None}
    running = facts.running_by_key()
    stops = [Stop(*key) for key in sorted({*running, *facts.sent}) if key not in requests and key not in kept]
    serves = [_serve(request) for key, request in requests.items() if facts.sent.get(key) != request or not _alive(running.get(key))]
    return (*stops, *(tunnel for part in parts for tunnel in part.tunnels), *serves)


def model_of(view: MeshView, facts: Facts, assignment: Assignment) -> LocalModel | None:
    """The file an assignment runs: on this disk, or for a split's worker without it the host's
    file on the Hub (no path: the runner fetches the worker's layers), else None."""
    if assignment.model_id in facts.on_disk:
        return facts.on_disk[assignment.model_id]
    if assignment.mode != Mode.SPLIT_WORKER or not assignment.source:
        return None
    host = next((peer.record for peer in view.peers if peer.record.node_id == assignment.host), None)
    return LocalModel(assignment.model_id, "", 0, host.fingerprint_of(assignment.model_id) if host is not None else "", assignment.source)


def wanted(view: MeshView, tunnels: Mapping[tuple[str, int], str], assignment: Assignment, model: LocalModel, draft: str = "", models_dir: str = "") -> Wanted:
    """`draft`: the path of the model's draft, which runs beside each llama-server (a split's host's
    too); `models_dir`: where a worker without the model keeps the layers it fetches."""
    own = view.own.node_id
    if assignment.mode == Mode.SOLO:
        return Wanted(LlamaRequest(model.model_id, model.path, draft=draft))
    if assignment.mode == Mode.MOE_SHARD:
        return Wanted(LlamaRequest(model.model_id, model.path, shard=assignment.experts_of(own), draft=draft))
    if assignment.mode == Mode.SPLIT_WORKER:
        index = assignment.workers.index(own) if own in assignment.workers else 0
        key = assignment.rpc_key
        host = next((peer.record for peer in view.members() if peer.record.node_id == assignment.host), None)
        if host is None:
            # Its host out of sight (a gossip gap): which blocks it would hold is not known, and a
            # guess could restart the rpc-server on other blocks; it stays as it is.
            return Wanted(kept=(model.model_id, ProcessKind.RPC_SERVER))
        last = host_last(host)
        if model.path:
            return Wanted(RpcRequest(model.model_id, model.path, assignment.layers, index, rpc_key=key, host_last=last))
        return Wanted(RpcRequest(model.model_id, "", assignment.layers, index, model.source, model.fingerprint, models_dir, rpc_key=key, host_last=last))
    if assignment.mode == Mode.SPLIT_HOST:
        return _host(view, tunnels, assignment, model, draft)
    return Wanted()  # unserved or dropped: nothing runs


def _host(view: MeshView, tunnels: Mapping[tuple[str, int], str], assignment: Assignment, model: LocalModel, draft: str) -> Wanted:
    """llama-server with --rpc once every worker's rpc-server is ready (speaking TLS with the
    split's key when it has one) and the gateway said where it is reached: directly, or through a
    tunnel."""
    waiting = Wanted(kept=(model.model_id, ProcessKind.LLAMA_SERVER))
    records = {peer.record.node_id: (peer.record, peer.address) for peer in view.members()}
    targets: list[OpenTunnel] = []
    for worker in assignment.workers:
        record, address = records.get(worker, (None, ""))
        rpc = ready_rpc_server(record, model.model_id) if record is not None else None
        if rpc is None or bool(assignment.rpc_key) != bool(rpc.host):
            return waiting  # not up yet, or still the rpc-server of the split before (TLS or not)
        targets.append(OpenTunnel(address, rpc.port, direct_host(rpc.host, address)))
    missing = tuple(target for target in targets if (target.address, target.port) not in tunnels)
    if missing:
        return Wanted(kept=waiting.kept, tunnels=missing)
    endpoints = tuple(tunnels[(target.address, target.port)] for target in targets)
    workers_layers = assignment.layers[1:]
    # Each worker's blocks dealt over its rpc-server's devices (those its record lists, else its CPU),
    # by their memory: llama.cpp numbers the RPC devices across the workers, one --tensor-split entry
    # each. A device listing no memory (an accelerator such as BLAS) is none an rpc-server serves.
    per_device = [
        share
        for worker, blocks in zip(assignment.workers, workers_layers, strict=True)
        for share in accelerators.shares(blocks, [d.total_bytes for d in records[worker][0].devices if d.total_bytes > 0] or [1])
    ]
    return Wanted(
        LlamaRequest(
            model.model_id,
            model.path,
            endpoints,
            sum(workers_layers),
            tuple(float(n) for n in per_device),
            draft=draft,
            rpc_key=assignment.rpc_key,
            host_last=host_last(view.own),
        )
    )


def host_last(host: NodeRecord | None) -> bool:
    """Whether a split's host runs its blocks on a GPU, after the workers' (llama.cpp's own RPC
    order, command.llama_server_argv): its record lists the devices its llama-server uses. A CPU
    host (none listed) runs the first blocks, the workers the last ones."""
    return host is not None and any(device.total_bytes > 0 for device in host.devices)


def ready_rpc_server(record: NodeRecord, model_id: str) -> ServedModel | None:
    """The node's ready rpc-server for the model (None: none ready)."""
    return next((s for s in record.served if s.model_id == model_id and s.kind == ProcessKind.RPC_SERVER and s.state == ProcessState.READY and s.port), None)


def direct_host(listening: str, address: str) -> str:
    """Where a TLS rpc-server listening on `listening` is dialled by its peers: that address, or
    for one on every interface the host of the worker's QUIC address; "" for a plain rpc-server."""
    if not listening:
        return ""
    host = address.rsplit(":", 1)[0].strip("[]")
    if listening in ("0.0.0.0", "::"):
        return host
    if listening.startswith("127.") and listening != host:
        return ""  # the worker's loopback (its rpc_host): other machines reach it through the tunnel only
    return listening


def _alive(served: ServedModel | None) -> bool:
    return served is not None and served.state in ALIVE


def _serve(request: Request) -> Serve | ServeRpc:
    return Serve(request) if isinstance(request, LlamaRequest) else ServeRpc(request)

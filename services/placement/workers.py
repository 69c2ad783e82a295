"""A split's workers, seen from both ends: pure functions over gossip records, no I/O.

A node named as a worker in a live peer's split plan lends its memory to it, whatever its own
flags: the host counted that node's memory when it planned, so a node that ignored the plan would
leave the model unserved. A host whose worker does not come up within a bound plans without it
for a while (the loop keeps the clocks; decide() gets the workers left out).
Must not import grpc, asyncio or anything that does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.common.records import Assignment, MeshView, Mode, NodeRecord, ProcessKind, ProcessState


def lent(own_id: str, records: Mapping[str, NodeRecord], held: frozenset[str], fetches: bool = False) -> dict[str, Assignment]:
    """model id -> this node's part in a live peer's split that names it as a worker, for the
    models it holds on disk, and (`fetches`: its --download allows) for models on the Hub whose
    layers it fetches (the host named it for its download policy). Two hosts naming it for one
    model (views not yet settled): the lowest id, so that every node picks the same."""
    parts: dict[str, Assignment] = {}
    for node_id in sorted(records):
        if node_id == own_id:
            continue
        for plan in records[node_id].assignments:
            usable = plan.model_id in held or (fetches and bool(plan.source))
            if plan.mode == Mode.SPLIT_HOST and own_id in plan.workers and usable and plan.model_id not in parts:
                parts[plan.model_id] = Assignment(
                    plan.model_id,
                    Mode.SPLIT_WORKER,
                    f"lends its memory to {node_id}'s split",
                    node_id,
                    plan.workers,
                    plan.layers,
                    source=plan.source,
                    rpc_key=plan.rpc_key,
                )
    return parts


def wants(record: NodeRecord, model_id: str) -> bool:
    """Whether the node plans for the model itself (it was asked to serve it), so it may host its
    split; a node that only lends to splits (or holds the file and was asked nothing) never hosts."""
    return any(a.model_id == model_id and a.mode not in (Mode.SPLIT_WORKER, Mode.DROPPED) for a in record.assignments)


def late_workers(
    view: MeshView, assignments: Sequence[Assignment], since: Mapping[tuple[str, str], float], now: float, bound: float
) -> tuple[dict[tuple[str, str], float], frozenset[str]]:
    """Workers of this node's splits that do not come up: the clocks to keep for the next call
    ((model id, worker) -> when it was first seen not coming up) and the workers late by `bound`
    seconds. A clock runs while the worker's record shows neither a ready rpc-server for the model
    nor work towards one (the plan taken and its rpc-server not failed yet): priming a big model's
    layers may take minutes, a worker that cannot start its rpc-server or ignores the plan must not
    hold the model unserved."""
    records = {peer.record.node_id: peer.record for peer in view.members()}
    clocks: dict[tuple[str, str], float] = {}
    for plan in assignments:
        if plan.mode != Mode.SPLIT_HOST:
            continue
        for worker in plan.workers:
            # A worker gone from the view is no matter of clocks: the host re-plans without it at once.
            if worker in records and not _coming_up(records[worker], plan.model_id, view.own.node_id):
                clocks[(plan.model_id, worker)] = since.get((plan.model_id, worker), now)
    return clocks, frozenset(worker for (_, worker), start in clocks.items() if now - start >= bound)


def _coming_up(worker: NodeRecord, model_id: str, host: str) -> bool:
    rpc = next((s for s in worker.served if s.model_id == model_id and s.kind == ProcessKind.RPC_SERVER), None)
    if rpc is not None and rpc.state == ProcessState.READY:
        return True
    taken = any(a.model_id == model_id and a.mode == Mode.SPLIT_WORKER and a.host == host for a in worker.assignments)
    return taken and (rpc is None or (rpc.state == ProcessState.STARTING and rpc.restarts == 0))

"""What this node does for each model it was asked to serve, given the mesh: a pure function.

Rules, in order: a model that fits this node's free memory runs solo; otherwise the node with the
most memory among those holding the GGUF hosts a split (its plan names the workers and their
layers); a node named as a worker in its host's published plan runs an rpc-server; anything else
is unserved, with the reason. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.common.records import Assignment, MeshView, NodeRecord
from services.placement import planner
from services.placement.split import Holder, plan_split


@dataclass(frozen=True)
class ModelAsk:
    model_id: str
    size_bytes: int
    layers: int
    promoted: str = ""  # why the mesh's demand asks this node to serve it; "" for --model


def decide(view: MeshView, asks: Sequence[ModelAsk], memory: int, *, force_split: bool, headroom: float,
           context_bytes: int, dropped: frozenset[str] = frozenset()) -> tuple[Assignment, ...]:
    own = view.own
    rtts = {peer.record.node_id: peer.rtt for peer in view.peers if peer.status == "alive"}
    records = {own.node_id: own, **{peer.record.node_id: peer.record for peer in view.peers if peer.status == "alive"}}
    left = memory
    decisions = []
    for ask in asks:
        if ask.promoted:
            need = planner.memory_needed(ask.size_bytes, headroom, context_bytes)
            left -= need
            decisions.append(Assignment(ask.model_id, "solo", ask.promoted, promoted=True))
            continue
        if ask.model_id in dropped:
            decisions.append(Assignment(ask.model_id, "dropped", "dropped by mesh-llm drop"))
            continue
        need = planner.memory_needed(ask.size_bytes, headroom, context_bytes)
        if need <= left and not force_split:
            left -= need
            decisions.append(Assignment(ask.model_id, "solo", f"fits: needs {need / planner.GIB:.2f} GiB of {memory / planner.GIB:.2f} GiB offered"))
            continue
        decisions.append(_split_role(ask, own, left, records, rtts, force_split, headroom, context_bytes))
    return tuple(decisions)


def _keep_split(ask: ModelAsk, own: NodeRecord, holders: Sequence[Holder]) -> Assignment | None:
    """The split this host already runs, while all its workers are still there (no flapping:
    re-planning restarts llama-server and reloads the model)."""
    current = next((a for a in own.assignments if a.model_id == ask.model_id and a.mode == "split-host"), None)
    present = {h.node_id for h in holders}
    if current is not None and set(current.workers) <= present and sum(current.layers) == ask.layers:
        return current
    return None


def _split_role(ask: ModelAsk, own: NodeRecord, left: int, records: Mapping[str, NodeRecord], rtts: Mapping[str, float],
                force_split: bool, headroom: float, context_bytes: int) -> Assignment:
    # This node offers what its solo models left over; peers' own use is theirs to account for.
    holders = [Holder(node_id, left if node_id == own.node_id else r.memory_offered_bytes) for node_id, r in records.items()
               if ask.model_id in r.models_on_disk and r.role != "client"]
    host = min(holders, key=lambda h: (-h.memory, h.node_id)).node_id if holders else ""
    if host == own.node_id:
        kept = _keep_split(ask, own, holders)
        if kept is not None:
            return kept
        # Only the host's RTTs matter (it talks to every worker): it measures them itself.
        def rtt(a: str, b: str) -> float | None:
            other = b if a == own.node_id else a
            return rtts.get(other) if own.node_id in (a, b) else None

        plan = plan_split(ask.size_bytes, ask.layers, holders, rtt, force_split, headroom, context_bytes)
        if plan.mode == "split":
            return Assignment(ask.model_id, "split-host", plan.reason, plan.host, plan.workers,
                              tuple(plan.layers[node] for node in (plan.host, *plan.workers)))
        if plan.mode == "solo":
            return Assignment(ask.model_id, "solo", plan.reason)
        return Assignment(ask.model_id, "unserved", plan.reason)
    hosted = next((a for a in records[host].assignments if a.model_id == ask.model_id and a.mode == "split-host"), None) if host else None
    if hosted is not None and own.node_id in hosted.workers:
        return Assignment(ask.model_id, "split-worker", f"works for {host}'s split", hosted.host, hosted.workers, hosted.layers)
    return Assignment(ask.model_id, "unserved", f"too big for this node; {host or 'no node'} would host a split" if host else "no node holds it")

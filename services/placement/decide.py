"""What this node does for each model it was asked to serve, given the mesh: a pure function.

Rules, in order: a model that fits this node's free memory runs solo; otherwise the node with the
most memory among those holding the same GGUF plans how to spread it (the same fingerprint: a
peer with another file under the model's name holds another model and is never in the plan). A
dense model is split by layers (pipeline over RPC): the biggest holder asked for it hosts (one
that only lends never does) and names the workers and their layers; a node named as a worker in
a live host's plan runs an rpc-server, even for a model it was not asked for, and a host leaves
out workers that do not come up (workers.py). A
Mixture-of-Experts model is split by experts (never over RPC): the planner names every node's
experts per layer (moe.py) and each of those nodes serves its own shard. Anything else is
unserved, with the reason. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.common.records import Assignment, DownloadPolicy, MeshView, Mode, NodeRecord, Role
from services.placement import workers
from services.placement.holders import Holder, elect, other_files, same_file
from services.placement.memory import GIB, memory_needed
from services.placement.moe import ShardPlan, plan_shards
from services.placement.split import plan_split


@dataclass(frozen=True)
class MoEAsk:
    """What expert splitting needs to know of a Mixture-of-Experts model."""

    experts: int
    experts_used: int
    expert_bytes: int  # one expert of one layer (its gate, up and down matrices)
    trunk_bytes: int  # everything but the experts
    ranking: tuple[tuple[int, ...], ...]  # per layer: expert ids, most used first
    floor: int = 0  # experts per layer a shard keeps at least (besides 4 x experts_used)

    def room(self, memory: int, headroom: float, context_bytes: int, layers: int) -> int:
        """How many experts per layer a shard may keep in `memory` (at most all of them)."""
        free = (memory - context_bytes) / (1 + headroom) - self.trunk_bytes  # as memory_needed counts
        return max(0, min(self.experts, int(free // max(1, self.expert_bytes * layers))))


@dataclass(frozen=True)
class ModelAsk:
    model_id: str
    size_bytes: int
    layers: int
    promoted: str = ""  # why the mesh's demand asks this node to serve it; "" for --model
    moe: MoEAsk | None = None
    fingerprint: str = ""  # of this node's file: peers with another file under the name are not holders
    source: str = ""  # the file on the Hub ("org/repo/path.gguf"): a peer without it may fetch its layers
    catalog: bool = False  # a catalog entry's file: peers whose --download is catalog may fetch it too


def decide(
    view: MeshView,
    asks: Sequence[ModelAsk],
    memory: int,
    *,
    force_split: bool,
    headroom: float,
    context_bytes: int,
    dropped: frozenset[str] = frozenset(),
    held: frozenset[str] = frozenset(),
    excluded: frozenset[str] = frozenset(),
) -> tuple[Assignment, ...]:
    """`held`: the models this node may lend to a peer's split (those on its disk; none on a client).
    `excluded`: workers this node's splits leave out for now (they did not come up: workers.late_workers)."""
    own = view.own
    # Every peer counts, suspects too: a suspect is a member until declared dead, and a split that
    # dropped a worker at its first missed probe (a CPU busy loading a model) would restart for nothing.
    rtts = {peer.record.node_id: peer.rtt for peer in view.members()}
    records = {own.node_id: own, **{peer.record.node_id: peer.record for peer in view.members()}}
    lending = workers.lent(own.node_id, records, held - dropped, fetches=own.download_policy != DownloadPolicy.NEVER)
    usable = {node_id: record for node_id, record in records.items() if node_id not in excluded}
    left = memory
    decisions: list[Assignment] = []
    for ask in asks:
        if ask.promoted and ask.model_id in lending:
            # A host's plan naming this node wins over serving the model alone for demand: the host serves it.
            decisions.append(lending[ask.model_id])
            continue
        if ask.promoted:
            need = memory_needed(ask.size_bytes, headroom, context_bytes)
            left -= need
            decisions.append(Assignment(ask.model_id, Mode.SOLO, ask.promoted, promoted=True))
            continue
        if ask.model_id in dropped:
            decisions.append(Assignment(ask.model_id, Mode.DROPPED, "dropped by mesh-llm drop"))
            continue
        need = memory_needed(ask.size_bytes, headroom, context_bytes)
        if need <= left and not force_split:
            left -= need
            decisions.append(Assignment(ask.model_id, Mode.SOLO, f"fits: needs {need / GIB:.2f} GiB of {memory / GIB:.2f} GiB offered"))
            continue
        if ask.moe is not None:
            decisions.append(_moe_role(ask, ask.moe, own, left, records, headroom, context_bytes))
        else:
            decisions.append(_unforced(_split_role(ask, own, left, usable, rtts, force_split, headroom, context_bytes), force_split and need <= left, excluded))
    decided = {decision.model_id for decision in decisions}
    return (*decisions, *(part for model_id, part in sorted(lending.items()) if model_id not in decided))


def _unforced(role: Assignment, fits: bool, excluded: frozenset[str]) -> Assignment:
    """--split asks for a split wherever one can run, not for no model: when the workers it had
    are left out (they did not come up) and the model fits here, it runs solo meanwhile."""
    if role.mode != Mode.UNSERVED or not fits or not excluded:
        return role
    return Assignment(role.model_id, Mode.SOLO, f"fits; no worker for a split ({', '.join(sorted(excluded))} did not come up in time)")


def _holders(ask: ModelAsk, own: NodeRecord, left: int, records: Mapping[str, NodeRecord]) -> tuple[list[Holder], list[Holder]]:
    """(nodes holding this node's file of the model, nodes holding another file under its name).
    This node offers what its solo models left over; peers' own use is theirs to account for."""
    named = [
        Holder(
            node_id, left if node_id == own.node_id else r.memory_offered_bytes, ask.fingerprint if node_id == own.node_id else r.fingerprint_of(ask.model_id)
        )
        for node_id, r in records.items()
        if ask.model_id in r.models_on_disk and r.role != Role.CLIENT
    ]
    return same_file(named, ask.fingerprint)


def _fetchers(ask: ModelAsk, own: NodeRecord, records: Mapping[str, NodeRecord]) -> list[Holder]:
    """Peers without the model's file that may work for its split by fetching their layers from the
    Hub: their --download allows it (any: every Hub file; catalog: a catalog entry's) and they hold
    no other file under its name. They count with this node's fingerprint: the worker checks that
    the Hub's file has it before it serves."""
    if not ask.source:
        return []
    allowed = {DownloadPolicy.ANY, DownloadPolicy.CATALOG} if ask.catalog else {DownloadPolicy.ANY}
    return [
        Holder(node_id, record.memory_offered_bytes, ask.fingerprint, fetches=True)
        for node_id, record in records.items()
        if node_id != own.node_id and record.role != Role.CLIENT and ask.model_id not in record.models_on_disk and record.download_policy in allowed
    ]


def _moe_role(ask: ModelAsk, moe: MoEAsk, own: NodeRecord, left: int, records: Mapping[str, NodeRecord], headroom: float, context_bytes: int) -> Assignment:
    holders, others = _holders(ask, own, left, records)
    planner = elect(holders)
    planner_id = planner.node_id if planner is not None else ""
    if planner_id == own.node_id:
        capacity = sorted((h.node_id, moe.room(h.memory, headroom, context_bytes, ask.layers)) for h in holders)
        least = min(moe.experts, max(4 * moe.experts_used, moe.floor))
        usable = [(node, room) for node, room in capacity if room >= least]
        current = next((a for a in own.assignments if a.model_id == ask.model_id and a.mode == Mode.MOE_SHARD and a.host == own.node_id), None)
        if current is not None and {node for node, _ in current.shards} == {node for node, _ in usable}:
            return current  # the split stands while the same nodes can hold it: no reloads
        # A node lost, or one more that could hold a shard (more copies, smaller shards): plan again.
        plan = plan_shards(moe.ranking, moe.experts_used, usable, moe.floor) if usable else None
        if not isinstance(plan, ShardPlan):
            why = plan.reason if plan is not None else f"no node has room for {least} experts per layer"
            return Assignment(ask.model_id, Mode.UNSERVED, f"too big for one node, and no expert split fits: {why}" + other_files(others, ask.fingerprint))
        shards = tuple((node, plan.shard(node)) for node in plan.nodes)
        reason = (
            f"expert split over {len(shards)} nodes: {', '.join(f'{node} keeps {len(layers[0])}' for node, layers in shards)} "
            f"of {moe.experts} experts per layer; each expert on at least {plan.copies}"
        )
        return Assignment(
            ask.model_id, Mode.MOE_SHARD, reason, host=own.node_id, workers=tuple(node for node, _ in shards if node != own.node_id), shards=shards
        )
    planned = next((a for a in records[planner_id].assignments if a.model_id == ask.model_id and a.mode == Mode.MOE_SHARD), None) if planner_id else None
    experts = planned.experts_of(own.node_id) if planned is not None else ()
    if experts:
        return Assignment(
            ask.model_id,
            Mode.MOE_SHARD,
            f"shard of {planner_id}'s expert split: {len(experts[0])} of {moe.experts} experts per layer",
            host=planner_id,
            shards=((own.node_id, experts),),
        )
    return Assignment(ask.model_id, Mode.UNSERVED, f"too big for this node; {planner_id or 'no node'} plans an expert split")


def _keep_split(ask: ModelAsk, own: NodeRecord, holders: Sequence[Holder]) -> Assignment | None:
    """The split this host already runs, while all its workers are still there (no flapping:
    re-planning restarts llama-server and reloads the model)."""
    current = next((a for a in own.assignments if a.model_id == ask.model_id and a.mode == Mode.SPLIT_HOST), None)
    present = {h.node_id for h in holders}
    if current is not None and set(current.workers) <= present and sum(current.layers) == ask.layers:
        return current
    return None


def _split_role(
    ask: ModelAsk,
    own: NodeRecord,
    left: int,
    records: Mapping[str, NodeRecord],
    rtts: Mapping[str, float],
    force_split: bool,
    headroom: float,
    context_bytes: int,
) -> Assignment:
    holders, others = _holders(ask, own, left, records)
    fetchers = _fetchers(ask, own, records)
    # The biggest holder that was asked for the model hosts: one that only lends its memory never
    # plans for it, so naming it host would leave the model unserved.
    askers = [h for h in holders if h.node_id == own.node_id or workers.wants(records[h.node_id], ask.model_id)]
    elected = elect(askers)
    host = elected.node_id if elected is not None else ""
    if host == own.node_id:
        kept = _keep_split(ask, own, [*holders, *fetchers])
        if kept is not None:
            return kept

        # Only the host's RTTs matter (it talks to every worker): it measures them itself.
        def rtt(a: str, b: str) -> float | None:
            other = b if a == own.node_id else a
            return rtts.get(other) if own.node_id in (a, b) else None

        plan = plan_split(
            ask.size_bytes,
            ask.layers,
            [*holders, *fetchers, *others],
            rtt,
            force_split,
            headroom,
            context_bytes,
            fingerprint=ask.fingerprint,
            host_id=own.node_id,
        )
        if plan.mode == Mode.SPLIT_HOST:
            layers = tuple(plan.layers[node] for node in (plan.host, *plan.workers))
            return Assignment(ask.model_id, Mode.SPLIT_HOST, plan.reason, plan.host, plan.workers, layers, source=ask.source)
        if plan.mode == Mode.SOLO:
            return Assignment(ask.model_id, Mode.SOLO, plan.reason)
        return Assignment(ask.model_id, Mode.UNSERVED, plan.reason)
    hosted = next((a for a in records[host].assignments if a.model_id == ask.model_id and a.mode == Mode.SPLIT_HOST), None) if host else None
    if hosted is not None and own.node_id in hosted.workers:
        return Assignment(
            ask.model_id,
            Mode.SPLIT_WORKER,
            f"works for {host}'s split",
            hosted.host,
            hosted.workers,
            hosted.layers,
            source=hosted.source,
            rpc_key=hosted.rpc_key,
        )
    return Assignment(ask.model_id, Mode.UNSERVED, f"too big for this node; {host or 'no node'} would host a split" if host else "no node holds it")

"""One round of placement as a pure function: plan(view, facts, now) -> the actions that take this
node from what runs to what the mesh needs of it, and the plan's memory for the next round.

A chain of small rules: promotions for the mesh's demand settle first (promotion.py); a model not
yet read is inspected before anything is decided with it; workers that do not come up are left out
for a while (workers.py); decide() says what this node does per model; the record is published
where gossip's copy differs; the runner is asked only for the difference (processes.py). A mesh
change that alters nothing yields no action. Must not import grpc, asyncio or anything doing I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.common.records import SERVING_MODES, Assignment, DownloadPolicy, MeshView, ModelFile, Role, ServedModel
from services.placement.actions import Action, Event, Fetch, Inspect, Note, Publish
from services.placement.decide import ModelAsk, MoEAsk, decide
from services.placement.facts import Facts, LocalModel, Memory
from services.placement.memory import memory_needed
from services.placement.processes import process_actions
from services.placement.promotion import Rules, promotions
from services.placement.split_keys import keyed
from services.placement.workers import late_workers

MAX_EXCLUSION_SECONDS = 6 * 3600.0  # a worker left out again and again is still tried a few times a day


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    memory: Memory  # what the next round starts from
    notes: tuple[Note, ...] = ()


def plan(view: MeshView, facts: Facts, now: float) -> Plan:
    """`now`: monotonic seconds (promotion settling and workers' clocks)."""
    memory, notes = promote(view, facts, now)
    unread = [Inspect(model_id, facts.on_disk[model_id].path) for model_id in planned(facts, memory) if model_id not in facts.inspections]
    if unread:
        # Decide once every model is read: a decision without one would be published, then undone.
        return Plan((*publish(view, facts, memory.assignments), *unread, *fetches(facts, memory)), memory, notes)
    memory, left_out = exclude(view, facts, memory, now)
    assignments = assign(view, facts, memory)
    decided = [Note(Event.DECIDED, {"model": a.model_id, "mode": a.mode, "reason": a.reason}) for a in assignments] if assignments != memory.assignments else []
    actions = (*publish(view, facts, assignments), *process_actions(view, facts, assignments), *fetches(facts, memory))
    return Plan(actions, replace(memory, assignments=assignments), (*notes, *left_out, *decided))


def assign(view: MeshView, facts: Facts, memory: Memory) -> tuple[Assignment, ...]:
    """decide() over this node as it knows itself, not gossip's copy: that lags a round, and is
    empty after gossip restarted."""
    own = replace(view.own, **holdings(facts), assignments=memory.assignments or view.own.assignments)
    s = facts.settings
    records = {peer.record.node_id: peer.record for peer in view.members()}
    decided = decide(
        replace(view, own=own),
        asks(facts, memory),
        facts.memory_offered,
        force_split=s.split,
        headroom=s.headroom,
        context_bytes=s.context_bytes,
        dropped=facts.dropped,
        held=frozenset() if s.client else frozenset(facts.on_disk),
        excluded=frozenset(memory.excluded),
    )
    return keyed(decided, own, records, facts.split_secret, view.revoked)


def publish(view: MeshView, facts: Facts, assignments: Sequence[Assignment]) -> list[Action]:
    record = record_changes(view, facts, assignments)
    return [Publish(record)] if record else []


def planned(facts: Facts, memory: Memory) -> list[str]:
    """The models this node plans for: its own (--model), then those the mesh's demand gave it that
    are on its disk (one still on the Hub is fetched first: fetches())."""
    return [*facts.asked, *(model_id for model_id in memory.promoted if model_id not in facts.asked and model_id in facts.on_disk)]


def fetches(facts: Facts, memory: Memory) -> list[Fetch]:
    """Downloads of the catalog models the mesh's demand gave this node, unless one runs already."""
    downloading = {download.model_id for download in facts.downloads}
    return [Fetch(model_id) for model_id in memory.promoted if model_id not in facts.on_disk and model_id not in downloading]


def promote(view: MeshView, facts: Facts, now: float) -> tuple[Memory, tuple[Note, ...]]:
    """Promotions kept, and new ones once they stayed wanted `promote_settle` seconds (views agree first)."""
    s, memory = facts.settings, facts.memory
    needs = {name: memory_needed(model.size_bytes, s.headroom, s.context_bytes) for name, model in facts.on_disk.items() if name not in facts.dropped}
    fetchable: Mapping[str, LocalModel] = {} if s.download == DownloadPolicy.NEVER else facts.on_hub
    on_hub = {name: memory_needed(model.size_bytes, s.headroom, s.context_bytes) for name, model in fetchable.items() if name not in facts.dropped}
    wanted = promotions(view, needs, memory.promoted, Rules(s.hot_ratio, s.hot_requests), on_hub) if not s.client else {}
    pending = {model: memory.pending.get(model, now) for model in wanted if model not in memory.promoted}
    settled = [model for model, since in pending.items() if now - since >= s.promote_settle]
    notes = [
        *(Note(Event.PROMOTED, {"model": model, "reason": wanted[model]}) for model in settled),
        *(Note(Event.DEMOTED, {"model": model, "reason": "no demand left for it (TTL passed)"}) for model in sorted(set(memory.promoted) - set(wanted))),
    ]
    pending = {model: since for model, since in pending.items() if model not in settled}
    promoted = {model: reason for model, reason in wanted.items() if model not in pending}
    return replace(memory, promoted=promoted, pending=pending), tuple(notes)


def exclude(view: MeshView, facts: Facts, memory: Memory, now: float) -> tuple[Memory, tuple[Note, ...]]:
    """Workers left out of this node's split plans: late ones join, those whose time is up leave."""
    s = facts.settings
    waiting, late = late_workers(view, memory.assignments, memory.waiting, now, s.worker_start_bound)
    excluded, strikes, notes = dict(memory.excluded), dict(memory.strikes), list[Note]()
    for worker in sorted(late - set(excluded)):
        # Each time the same worker is late again it stays out twice as long (capped): a host that
        # serves solo meanwhile is not re-planned every few minutes around a worker that never comes.
        strikes[worker] = strikes.get(worker, 0) + 1
        exclusion = min(s.worker_exclusion * 2 ** (strikes[worker] - 1), MAX_EXCLUSION_SECONDS)
        notes.append(Note(Event.WORKER_LEFT_OUT, {"worker": worker, "bound_seconds": s.worker_start_bound, "for_seconds": exclusion}))
        excluded[worker] = now + exclusion
    excluded = {worker: until for worker, until in excluded.items() if until > now}
    return replace(memory, waiting=waiting, excluded=excluded, strikes=strikes), tuple(notes)


def asks(facts: Facts, memory: Memory) -> list[ModelAsk]:
    """The models as decide() plans them: this node's own, then its promotions with their reasons."""
    return [ask(facts, model_id, memory.promoted.get(model_id, "") if model_id not in facts.asked else "") for model_id in planned(facts, memory)]


def ask(facts: Facts, model_id: str, promoted: str) -> ModelAsk:
    model, read = facts.on_disk[model_id], facts.inspections[model_id]
    moe = None
    if read.experts > 1:
        moe = MoEAsk(read.experts, read.experts_used, read.expert_bytes, read.trunk_bytes, read.ranking, facts.settings.moe_floor)
    # The draft runs beside the model (on a split's host): its memory is the model's too.
    size = model.size_bytes + draft_bytes(facts, model_id)
    return ModelAsk(model_id, size, read.layers, promoted, moe, model.fingerprint, model.source, model.catalog)


def draft_bytes(facts: Facts, model_id: str) -> int:
    """Bytes of the draft model that runs with the model (0 for none)."""
    path = facts.drafts.get(model_id)
    return next((other.size_bytes for other in facts.on_disk.values() if path and other.path == path), 0)


def record_changes(view: MeshView, facts: Facts, assignments: Sequence[Assignment]) -> dict[str, object]:
    """The fields of this node's record whose gossip copy differs from what they should say (all of
    them when gossip restarted and holds an empty record)."""
    client = facts.settings.client
    role = Role.CLIENT if client else (Role.SERVING if any(a.mode in SERVING_MODES for a in assignments) else Role.STANDBY)
    record = {
        "role": role,
        **holdings(facts),
        "assignments": tuple(assignments),
        "served": served(facts),
        "downloads": facts.downloads,
    }
    return {name: value for name, value in record.items() if getattr(view.own, name) != value}


def holdings(facts: Facts) -> dict[str, Any]:
    """What this node offers the mesh: its memory and the devices it comes from, the models on its
    disk and what it may download for the mesh (a client: none)."""
    client = facts.settings.client
    return {
        "download_policy": DownloadPolicy.NEVER if client else facts.settings.download,
        "memory_offered_bytes": facts.memory_offered,
        "devices": facts.devices,
        "rpc_tls": facts.rpc_tls and not client,
        "models_on_disk": () if client else tuple(sorted(facts.on_disk)),
        "model_files": () if client else tuple(ModelFile(m.model_id, m.fingerprint) for _, m in sorted(facts.on_disk.items())),
    }


def served(facts: Facts) -> tuple[ServedModel, ...]:
    """The runner's report as the record carries it: each model with the fingerprint of the file it
    came from (a shard's source)."""
    return tuple(replace(s, fingerprint=_fingerprint(facts.on_disk, s.model_id)) for s in facts.running)


def _fingerprint(on_disk: Mapping[str, LocalModel], model_id: str) -> str:
    model = on_disk.get(model_id)
    return model.fingerprint if model is not None else ""


def due(facts: Facts, now: float) -> bool:
    """Whether a quiet mesh still needs a round: a promotion settling, a worker's clock run out, an
    exclusion ended."""
    s, memory = facts.settings, facts.memory
    return (
        bool(memory.pending)
        or any(now - since >= s.worker_start_bound for since in memory.waiting.values())
        or any(until <= now for until in memory.excluded.values())
    )


def droppable(facts: Facts, model_id: str) -> str | None:
    """The model `mesh-llm drop` names (any case) among those this node serves of its own or for
    demand; None when it serves no such model or dropped it already."""
    names = [*facts.asked, *facts.memory.promoted]
    match = next((name for name in names if name.lower() == model_id.lower()), None)
    return match if match not in facts.dropped else None

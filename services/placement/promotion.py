"""Which models a standby node should serve for the mesh's demand: a pure function.

Rules, in order:
1. a model with demand (requests within the TTL, or pinned by a live node) and no live server is
   served by the best-fitting standby node that holds it (least memory left over; then node id), so
   when several standbys qualify exactly one takes it; when no standby that fits holds it and it is
   a catalog model on the Hub, by the best-fitting standby whose --download allows fetching it (it
   downloads the model first);
2. rebalance: when a served model's requests in the last hour per server reach `hot_ratio` times
   the coldest served model's (and at least `hot_requests`), the best-fitting standby serves it too.
A node keeps a model it was promoted for while the model stays in the demand map (no flapping);
the caller waits `settle` seconds before acting on a new promotion, so that views agree first.
No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.records import ANSWERING_MODES, DownloadPolicy, MeshView, ModelDemand, NodeRecord, ProcessKind, ProcessState, Role
from services.placement.memory import GIB


@dataclass(frozen=True)
class Rules:
    hot_ratio: float = 3.0
    hot_requests: int = 10


def promotions(
    view: MeshView, needs: Mapping[str, int], current: Mapping[str, str], rules: Rules = Rules(), on_hub: Mapping[str, int] | None = None
) -> dict[str, str]:
    """model id -> reason, for the models this node should serve for demand. `needs` is the memory
    each model this node holds on disk needs; `on_hub` that of the catalog's models it does not
    hold, which a standby may download; `current` what it already serves for demand."""
    on_hub = on_hub or {}
    demand = {d.model_id: d for d in view.demand}
    kept = {model: reason for model, reason in current.items() if model in demand}
    if kept or view.own.role == Role.CLIENT or _pins(view.own):
        return kept
    records = [view.own, *(peer.record for peer in view.members())]
    servers = {model: _server_count(records, model) for model in demand}
    for model, reason in [*_unserved(demand, servers), *_hot(demand, servers, rules)]:
        need = needs.get(model, on_hub.get(model))
        if need is not None and _best_standby(records, model, need, fetchable=model in on_hub) == view.own.node_id:
            fetch = "" if model in needs else " (it downloads the model first)"
            return {
                model: f"{reason}; this is the best-fitting standby node{fetch} (needs {need / GIB:.2f} GiB of {view.own.memory_offered_bytes / GIB:.2f} GiB)"
            }
    return {}


def _unserved(demand: Mapping[str, ModelDemand], servers: Mapping[str, int]) -> list[tuple[str, str]]:
    wanted = [d for d in demand.values() if servers[d.model_id] == 0 and (d.requests or d.pinned)]
    wanted.sort(key=lambda d: (-d.recent, -d.last_seen, d.model_id))
    return [(d.model_id, f"demand for {d.model_id} ({d.requests} requests) and no live server") for d in wanted]


def _hot(demand: Mapping[str, ModelDemand], servers: Mapping[str, int], rules: Rules) -> list[tuple[str, str]]:
    served = {model: demand[model].recent / count for model, count in servers.items() if count}
    if len(served) < 2:
        return []
    coldest = min(served, key=lambda model: (served[model], model))
    hot = [
        model for model, load in served.items() if model != coldest and demand[model].recent >= rules.hot_requests and load >= rules.hot_ratio * served[coldest]
    ]
    hot.sort(key=lambda model: (-served[model], model))
    return [(model, f"{model} is hot: {served[model]:.0f} requests/hour per server vs {served[coldest]:.0f} for {coldest}") for model in hot]


def _server_count(records: list[NodeRecord], model: str) -> int:
    """Nodes serving the model or set to (an assignment counts: a restarting server is still its server)."""
    return sum(
        1
        for r in records
        if any(a.model_id == model and a.mode in ANSWERING_MODES for a in r.assignments)
        or any(s.model_id == model and s.kind == ProcessKind.LLAMA_SERVER and s.state in (ProcessState.STARTING, ProcessState.READY) for s in r.served)
    )


def _best_standby(records: list[NodeRecord], model: str, need: int, fetchable: bool = False) -> str:
    """The standby that serves the model: the best fit among those holding it, else (`fetchable`: a
    catalog model on the Hub) among those that may download it. Every node picks the same one."""
    fitting = [r for r in records if r.role == Role.STANDBY and r.memory_offered_bytes >= need]
    holding = [r for r in fitting if model in r.models_on_disk]
    fetching = [r for r in fitting if fetchable and r.download_policy != DownloadPolicy.NEVER] if not holding else []
    best = min(holding or fetching, key=lambda r: (r.memory_offered_bytes - need, r.node_id), default=None)
    return best.node_id if best is not None else ""


def _pins(record: NodeRecord) -> bool:
    """Whether the node serves models of its own (--model): then it is no standby."""
    return any(not a.promoted for a in record.assignments)

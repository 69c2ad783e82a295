"""Choosing where a request goes: a pure function of the mesh view, the model name, an affinity
key, the gateway's in-flight counts and now.

Owns the decision only; relaying is openai/relay.py's job. No I/O. Order of preference: a ready
server on this node; then, among peers serving the model, the session's node (rendezvous hashing
on the affinity key, so the same user or conversation lands on the same node for KV-cache reuse,
unless that node carries AFFINITY_SLACK more requests than the least loaded: bounded-load
rendezvous, so many sessions that hash alike cannot pile onto one node); without a key, the
least loaded, then the lowest RTT. The shards of an expert split (MoE) are chosen by the
affinity key alone, this node's own shard included.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.catalog import CATALOG
from services.common.model_names import match_name
from services.common.records import MeshView, Mode, NodeRecord, PeerStatus, ProcessKind, ProcessState, Role, ServedModel

# Requests in flight a session's node may carry beyond the least loaded server before the session
# goes to its next choice: a cache miss costs less than waiting behind a queue of others' requests.
AFFINITY_SLACK = 2


@dataclass(frozen=True)
class Target:
    model_id: str
    node_id: str
    port: int  # the local llama-server's port (local targets)
    address: str = ""  # the peer's QUIC address (remote targets)
    slots: int = 0  # requests its llama-server serves at once; 0: not told (an older node)

    @property
    def local(self) -> bool:
        return not self.address


@dataclass(frozen=True)
class UnknownModel:
    served: tuple[str, ...]
    ambiguous: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotReady:
    model_id: str
    state: str
    retry_after: int


@dataclass(frozen=True)
class _Server:
    record: NodeRecord
    served: ServedModel
    address: str  # "" for this node
    rtt: float


def served_models(view: MeshView) -> tuple[str, ...]:
    """Every model id served (in any state) anywhere in the mesh, sorted, once."""
    return tuple(sorted({server.served.model_id for server in _servers(view)}))


def resolve_name(requested: str, served: tuple[str, ...]) -> str | UnknownModel:
    """The served model a name means, by --model's rule (model_names.py): exact in any case, a
    catalog alias, or a unique substring."""
    found = match_name(requested, served)
    return found if isinstance(found, str) else UnknownModel(served, found)


def known_models(view: MeshView) -> tuple[str, ...]:
    """Models the mesh knows of, served or not: on a live node's disk, in the demand map, the catalog."""
    records = [view.own, *(peer.record for peer in view.peers if peer.status == PeerStatus.ALIVE)]
    names = {name for record in records if record.role != Role.CLIENT for name in record.models_on_disk}
    names.update(demand.model_id for demand in view.demand)
    return tuple(sorted(names | set(served_models(view)) | set(CATALOG)))


def demand_name(view: MeshView, requested: str) -> str:
    """The model a request counts as demand for: a known model it names, else the name as given."""
    name = resolve_name(requested, known_models(view))
    return name if isinstance(name, str) else requested


def route(
    view: MeshView, requested: str, now: float, affinity: str = "", loads: Mapping[str, int] | None = None, exclude: frozenset[str] = frozenset()
) -> list[Target] | UnknownModel | NotReady:
    """Ready servers for the model, best first; or why there are none."""
    servers = _servers(view)
    name = resolve_name(requested, tuple(sorted({s.served.model_id for s in servers})))
    if isinstance(name, UnknownModel):
        return name
    matches = [s for s in servers if s.served.model_id == name]
    ready = [s for s in matches if s.served.state == ProcessState.READY and s.record.node_id not in exclude]
    if not ready:
        return NotReady(name, matches[0].served.state, retry_after([s.served for s in matches], now))
    # Shards of an expert split are different models in all but name: sessions are spread over
    # them by their affinity key alone (no preference for this node), each sticking to one shard.
    sharded = any(a.model_id == name and a.mode == Mode.MOE_SHARD for s in matches for a in s.record.assignments)
    loads = loads or {}
    least = min(loads.get(s.record.node_id, 0) for s in ready)
    ready.sort(key=lambda s: _preference(s, affinity, loads, sharded, least))
    return [Target(name, s.record.node_id, s.served.port, s.address, s.served.slots) for s in ready]


def _preference(server: _Server, affinity: str, loads: Mapping[str, int], sharded: bool = False, least: int = 0) -> tuple:
    local = 0 if not server.address or sharded else 1
    if affinity:
        crowded = loads.get(server.record.node_id, 0) > least + AFFINITY_SLACK
        return (local, crowded, -_rendezvous(affinity, server.record.node_id))
    return (local, loads.get(server.record.node_id, 0), server.rtt, server.record.node_id)


def _rendezvous(key: str, node_id: str) -> int:
    """Highest-random-weight hashing: each key picks one node, stable while that node stays."""
    return int.from_bytes(hashlib.sha256(f"{key}\0{node_id}".encode()).digest()[:8], "big")


def _servers(view: MeshView) -> list[_Server]:
    own = [_Server(view.own, served, "", 0.0) for served in view.own.served if served.kind == ProcessKind.LLAMA_SERVER]
    peers = [
        _Server(peer.record, served, peer.address, peer.rtt)
        for peer in view.peers
        if peer.status == PeerStatus.ALIVE
        for served in peer.record.served
        if served.kind == ProcessKind.LLAMA_SERVER
    ]
    return own + peers


def retry_after(matches: list[ServedModel], now: float) -> int:
    """Whole seconds until the soonest restart is due (at least 1)."""
    due = [served.retry_at - now for served in matches if served.retry_at > now]
    return max(1, math.ceil(min(due))) if due else 1


def rpc_ports(view: MeshView) -> dict[int, str]:
    """Ports of this node's running rpc-servers, the only local ports an RPC tunnel may reach, each
    with the address it listens on ("": 127.0.0.1; a TLS rpc-server: where peers reach it)."""
    return {served.port: served.host for served in view.own.served if served.kind == ProcessKind.RPC_SERVER and served.port}


def local_port_of(view: MeshView, model_id: str) -> tuple[int, int, str]:
    """(port, 0, "") of this node's ready server for the model, or (0, status, why not) for a tunnel."""
    for served in view.own.served:
        if served.model_id == model_id and served.kind == ProcessKind.LLAMA_SERVER:
            if served.state == ProcessState.READY:
                return served.port, 0, ""
            return 0, 503, f"model '{model_id}' is {served.state} on node {view.own.name}"
    return 0, 503, f"model '{model_id}' is not served by node {view.own.name}"

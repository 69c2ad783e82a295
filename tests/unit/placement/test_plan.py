"""plan(): one round of placement as a table. Each row starts from a node that has converged (every
action of the plans before it performed) and changes one thing; the row names the actions the next
plan takes. The first row is the promise: a mesh change that alters nothing asks nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.common.records import (
    Assignment,
    Download,
    DownloadState,
    MeshView,
    Mode,
    ModelDemand,
    ModelFile,
    NodeRecord,
    Peer,
    ProcessKind,
    ProcessState,
    Role,
    ServedModel,
)
from services.placement.actions import Action, Fetch, Inspect, OpenTunnel, Publish, Serve, ServeRpc, Stop
from services.placement.facts import Facts, Inspection, LocalModel, Memory
from services.placement.memory import GIB
from services.placement.plan import Plan, plan
from services.placement.settings import PlacementSettings

LLAMA, RPC = ProcessKind.LLAMA_SERVER, ProcessKind.RPC_SERVER
SETTLE = 1.0
BOUND = 60.0


def model(model_id: str, gib: float = 1.0) -> LocalModel:
    return LocalModel(model_id, f"/models/{model_id}.gguf", int(gib * GIB), f"fp-{model_id}")


def record(node_id: str, gib: float, on_disk=("m",), **fields) -> NodeRecord:
    files = tuple(ModelFile(m, f"fp-{m}") for m in on_disk)
    return NodeRecord(node_id, node_id, memory_offered_bytes=int(gib * GIB), models_on_disk=tuple(on_disk), model_files=files, **fields)


def rpc_ready(model_id: str, port: int = 5000, state: ProcessState = ProcessState.READY, restarts: int = 0) -> ServedModel:
    return ServedModel(model_id, f"/models/{model_id}.gguf", state, port, restarts=restarts, kind=RPC)


def worker(node_id: str = "b", gib: float = 0.8, state: ProcessState = ProcessState.READY, host: str = "a", restarts: int = 0) -> Peer:
    """A peer that took host a's split of m and runs its rpc-server (in `state`)."""
    part = Assignment("m", Mode.SPLIT_WORKER, "works for a's split", host, (node_id,), (15, 15))
    rec = record(node_id, gib, role=Role.SERVING, assignments=(part,), served=(rpc_ready("m", state=state, restarts=restarts),))
    return Peer(rec, f"{node_id}:1", "alive", 0.002)


def facts(own_gib: float = 4.0, models=("m",), asked=("m",), **fields) -> Facts:
    settings = PlacementSettings(max_memory_bytes=int(own_gib * GIB), promote_settle=SETTLE, worker_start_bound=BOUND, split=fields.pop("split", False))
    on_disk = {m: model(m) for m in models}
    inspections = {m: Inspection(30) for m in models}
    return Facts(settings, int(own_gib * GIB), tuple(asked), on_disk, inspections, **fields)


def view(*peers: Peer) -> MeshView:
    """Gossip's view of a, before a published anything, and its peers."""
    return MeshView(own=record("a", 0.0, on_disk=()), peers=peers)


def perform(current: MeshView, state: Facts, actions: tuple[Action, ...]) -> tuple[MeshView, Facts]:
    """What a faithful executor and gossip make of the actions: the record updated, the runner
    running what it was asked (ready at once), tunnels open, files read."""
    running = {(s.model_id, s.kind): s for s in state.running}
    sent, tunnels, own = dict(state.sent), dict(state.tunnels), current.own
    for action in actions:
        match action:
            case Publish(values):
                own = replace(own, **values)
            case Serve(request) | ServeRpc(request):
                sent[request.key] = request
                running[request.key] = ServedModel(request.model_id, request.path, ProcessState.READY, 8000, kind=request.key[1])
            case Stop(model_id, kind):
                sent.pop((model_id, kind), None)
                running.pop((model_id, kind), None)
            case OpenTunnel(address, port, direct_host):
                # The gateway reaches a TLS rpc-server directly, a plain one through a tunnel.
                tunnels[(address, port)] = f"{direct_host}:{port}" if direct_host else f"127.0.0.1:{4000 + len(tunnels)}"
            case Inspect(model_id, _):
                state = replace(state, inspections={**state.inspections, model_id: Inspection(30)})
    state = replace(state, sent=sent, tunnels=tunnels, running=tuple(running[key] for key in sorted(running)))
    if state.running != current.own.served:
        own = replace(own, served=tuple(replace(s, fingerprint=f"fp-{s.model_id}") for s in state.running))
    return replace(current, own=own), state


def converge(current: MeshView, state: Facts, now: float = 0.0) -> tuple[MeshView, Facts]:
    for _ in range(10):
        result = plan(current, state, now)
        if not result.actions:
            return current, replace(state, memory=result.memory)
        current, state = perform(current, replace(state, memory=result.memory), result.actions)
    raise AssertionError(f"no convergence: {result.actions}")


def described(result: Plan) -> list[str]:
    """Actions in a few words: Publish(the fields), Serve(model, rpc endpoints or shard), Stop(model kind)…"""
    words = []
    for action in result.actions:
        match action:
            case Publish(values):
                words.append(f"Publish({','.join(sorted(values))})")
            case Serve(request):
                words.append(f"Serve({request.model_id}{' rpc=' + ','.join(request.rpc_endpoints) if request.rpc_endpoints else ''})")
            case ServeRpc(request):
                words.append(f"ServeRpc({request.model_id} worker {request.worker_index})")
            case Stop(model_id, kind):
                words.append(f"Stop({model_id} {kind})")
            case OpenTunnel(address, port, direct_host):
                words.append(f"OpenTunnel({address} {port}{' direct ' + direct_host if direct_host else ''})")
            case Inspect(model_id, _):
                words.append(f"Inspect({model_id})")
    return words


def solo() -> tuple[MeshView, Facts]:
    """a serves m alone; n is on its disk too."""
    return converge(view(), facts(models=("m", "n")))


def split_host(*peers: Peer, **fields) -> tuple[MeshView, Facts]:
    """a (0.8 GiB) hosts m (1 GiB: 1.35 GiB with headroom and context) over b's rpc-server."""
    return converge(view(*(peers or (worker(),))), facts(0.8, **fields))


def forced_split_host() -> tuple[MeshView, Facts]:
    """--split: a (4 GiB) hosts m over b (4 GiB) although m fits either."""
    return converge(view(worker(gib=4.0)), facts(4.0, split=True))


def standby_with_demand() -> tuple[MeshView, Facts]:
    """A standby node holding m; the mesh asks for m and nobody serves it."""
    current, state = converge(view(), facts(asked=()))
    return replace(current, demand=(ModelDemand("m", requests=5, recent=5, last_seen=1.0),)), state


def unchanged(current: MeshView, state: Facts) -> tuple[MeshView, Facts]:
    return replace(current, gossip_rounds=current.gossip_rounds + 1), state


def model_added(current: MeshView, state: Facts) -> tuple[MeshView, Facts]:
    return current, replace(state, asked=("m", "n"))


def model_added_unread(current: MeshView, state: Facts) -> tuple[MeshView, Facts]:
    return current, replace(state, asked=("m", "n"), inspections={"m": state.inspections["m"]})


def worker_lost(current: MeshView, state: Facts) -> tuple[MeshView, Facts]:
    return replace(current, peers=()), state


def worker_failing_past_the_bound(current: MeshView, state: Facts) -> tuple[MeshView, Facts]:
    """b's rpc-server keeps failing: its clock started at 0 (an earlier round saw it)."""
    failing = replace(current, peers=(worker(state=ProcessState.FAILED, restarts=1),))
    return failing, replace(state, memory=replace(state.memory, waiting={("m", "b"): 0.0}))


def runner_restarted(current: MeshView, state: Facts) -> tuple[MeshView, Facts]:
    return current, replace(state, running=())


def runner_reports_failed(current: MeshView, state: Facts) -> tuple[MeshView, Facts]:
    return current, replace(state, running=tuple(replace(s, state=ProcessState.FAILED) for s in state.running))


def gossip_restarted(current: MeshView, state: Facts) -> tuple[MeshView, Facts]:
    return replace(current, own=NodeRecord("a", "a")), state


def pending_since(since: float):
    def change(current: MeshView, state: Facts) -> tuple[MeshView, Facts]:
        return current, replace(state, memory=replace(state.memory, pending={"m": since}))

    return change


@pytest.mark.parametrize(
    ("start", "change", "now", "actions"),
    [
        (solo, unchanged, 0.0, []),  # the promise: nothing changed, nothing asked
        (split_host, unchanged, 0.0, []),
        (solo, model_added, 0.0, ["Publish(assignments)", "Serve(n)"]),
        (solo, model_added_unread, 0.0, ["Inspect(n)"]),  # read first, then decide
        (split_host, worker_lost, 0.0, ["Publish(assignments,role)", "Stop(m llama-server)"]),  # too big alone: unserved
        (standby_with_demand, pending_since(0.0), 0.5, []),  # a promotion settles first
        (standby_with_demand, pending_since(0.0), 2.0, ["Publish(assignments,role)", "Serve(m)"]),
        (split_host, worker_failing_past_the_bound, BOUND + 1, ["Publish(assignments,role)", "Stop(m llama-server)"]),  # too big alone
        (forced_split_host, worker_failing_past_the_bound, BOUND + 1, ["Publish(assignments)", "Serve(m)"]),  # split -> solo meanwhile
        (forced_split_host, worker_lost, 0.0, ["Publish(assignments,role)", "Stop(m llama-server)"]),  # --split with no worker: none
        (solo, runner_restarted, 0.0, ["Publish(served)", "Serve(m)"]),
        (split_host, runner_restarted, 0.0, ["Publish(served)", "Serve(m rpc=127.0.0.1:4000)"]),
        (solo, runner_reports_failed, 0.0, ["Publish(served)", "Serve(m)"]),
        (solo, gossip_restarted, 0.0, ["Publish(assignments,download_policy,memory_offered_bytes,model_files,models_on_disk,role,served)"]),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_round_asks_only_for_the_difference(start, change, now, actions) -> None:
    current, state = change(*start())
    assert described(plan(current, state, now)) == actions


def test_a_split_host_waits_for_its_workers_rpc_server_then_opens_a_tunnel_then_serves() -> None:
    state = facts(0.8)
    starting = view(worker(state=ProcessState.STARTING))
    first = plan(starting, state, 0.0)
    assert described(first) == ["Publish(assignments,download_policy,memory_offered_bytes,model_files,models_on_disk,role)"]  # planned, nothing to run yet
    current, state = perform(starting, replace(state, memory=first.memory), first.actions)
    current = replace(current, peers=(worker(),))  # b's rpc-server is ready
    second = plan(current, state, 0.0)
    assert described(second) == ["OpenTunnel(b:1 5000)"]
    current, state = perform(current, replace(state, memory=second.memory), second.actions)
    assert described(plan(current, state, 0.0)) == ["Serve(m rpc=127.0.0.1:4000)"]


def tls_worker(host_key: str, listening: str = "0.0.0.0", node_id: str = "b") -> Peer:
    """Worker b of a's split that speaks TLS: its rpc-server, with the split's key, listens on `listening`."""
    part = Assignment("m", Mode.SPLIT_WORKER, "works for a's split", "a", (node_id,), (15, 15), rpc_key=host_key)
    served = replace(rpc_ready("m"), host=listening) if host_key else rpc_ready("m")
    rec = record(node_id, 0.8, role=Role.SERVING, assignments=(part,), served=(served,), rpc_tls=True)
    return Peer(rec, "10.0.0.2:7447", "alive", 0.002)


def test_a_split_whose_nodes_all_speak_tls_has_a_key_and_its_host_dials_the_workers_directly() -> None:
    state = facts(0.8, rpc_tls=True, split_secret=b"s" * 32)
    first = plan(view(tls_worker("", node_id="b")), state, 0.0)
    (host_plan,) = first.memory.assignments
    assert host_plan.mode == Mode.SPLIT_HOST and len(host_plan.rpc_key) == 64
    assert "rpc_tls" in first.actions[0].values and first.actions[0].values["rpc_tls"] is True  # a says it speaks TLS
    current, state = perform(view(tls_worker("", node_id="b")), replace(state, memory=first.memory), first.actions)
    # b still runs a plain rpc-server (the split before, or not yet restarted with the key): a waits.
    assert described(plan(current, state, 0.0)) == []
    current = replace(current, peers=(tls_worker(host_plan.rpc_key),))
    opened = plan(current, state, 0.0)
    assert described(opened) == ["OpenTunnel(10.0.0.2:7447 5000 direct 10.0.0.2)"]
    current, state = perform(current, replace(state, memory=opened.memory), opened.actions)
    (serve,) = plan(current, state, 0.0).actions
    assert isinstance(serve, Serve) and serve.request.rpc_endpoints == ("10.0.0.2:5000",) and serve.request.rpc_key == host_plan.rpc_key


def test_a_worker_runs_its_rpc_server_with_the_key_of_its_hosts_split() -> None:
    plan_of_a = Assignment("m", Mode.SPLIT_HOST, "split", "a", ("b",), (15, 15), rpc_key="k" * 64)
    host = Peer(record("a", 0.8, role=Role.SERVING, assignments=(plan_of_a,), rpc_tls=True), "a:1", "alive", 0.002)
    own = MeshView(own=record("b", 0.0, on_disk=()), peers=(host,))
    result = plan(replace(own, own=replace(own.own, node_id="b", name="b")), replace(facts(0.8, asked=()), memory=Memory()), 0.0)
    (serve_rpc,) = [action for action in result.actions if isinstance(action, ServeRpc)]
    assert serve_rpc.request.rpc_key == "k" * 64


def test_a_split_with_a_node_that_cannot_speak_tls_has_no_key_and_uses_tunnels() -> None:
    state = facts(0.8, rpc_tls=True, split_secret=b"s" * 32)
    plain = worker()  # its record does not say rpc_tls
    current, state = converge(view(plain), state)
    (host_plan,) = state.memory.assignments
    assert host_plan.mode == Mode.SPLIT_HOST and host_plan.rpc_key == ""
    assert state.tunnels == {("b:1", 5000): "127.0.0.1:4000"}


def test_a_split_host_keeps_its_solo_server_while_the_split_waits() -> None:
    """A solo llama-server keeps serving until the split's workers are up (no Stop meanwhile)."""
    current, state = converge(view(), facts(4.0))
    forced = replace(state, settings=state.settings.model_copy(update={"split": True}), memory=Memory())
    result = plan(replace(current, peers=(worker(gib=4.0, state=ProcessState.STARTING),)), forced, 0.0)
    assert described(result) == ["Publish(assignments)"] and result.memory.assignments[0].mode == Mode.SPLIT_HOST


def test_a_worker_serves_its_hosts_split_and_stops_when_the_host_goes() -> None:
    plan_of_a = Assignment("m", Mode.SPLIT_HOST, "split", "a", ("b",), (15, 15))
    host = Peer(record("a", 0.8, role=Role.SERVING, assignments=(plan_of_a,)), "a:1", "alive", 0.002)
    own = MeshView(own=record("b", 0.0, on_disk=()), peers=(host,))
    current, state = converge(replace(own, own=replace(own.own, node_id="b", name="b")), replace(facts(0.8, asked=()), memory=Memory()))
    assert [(s.model_id, s.kind) for s in state.running] == [("m", RPC)]
    assert described(plan(replace(current, peers=()), state, 0.0)) == ["Publish(assignments,role)", "Stop(m rpc-server)"]


def test_a_standby_promoted_for_a_catalog_model_it_lacks_fetches_it_once_then_serves_it() -> None:
    hub_model = LocalModel("h", "", int(1 * GIB))  # a catalog model on the Hub, not on disk
    current, state = converge(view(), replace(facts(asked=()), on_hub={"h": hub_model}))
    current = replace(current, own=replace(current.own, download_policy="catalog"), demand=(ModelDemand("h", requests=5, recent=5, last_seen=1.0),))
    settling = plan(current, state, 0.0)
    assert not any(isinstance(action, Fetch) for action in settling.actions)  # a promotion settles first
    promoted = plan(current, replace(state, memory=settling.memory), 2.0)
    assert [action for action in promoted.actions if isinstance(action, Fetch)] == [Fetch("h")]
    assert not any(isinstance(action, Serve) for action in promoted.actions)  # nothing to serve before it is on disk
    downloading = replace(state, memory=promoted.memory, downloads=(Download("h", DownloadState.FETCHING, 10, 100),))
    assert not any(isinstance(action, Fetch) for action in plan(current, downloading, 3.0).actions)  # asked once
    arrived = replace(downloading, on_disk={**state.on_disk, "h": model("h")}, on_hub={})
    assert described(plan(current, arrived, 4.0))[-1:] == ["Inspect(h)"]  # read, then served
    assert "Serve(h)" in described(plan(current, replace(arrived, inspections={**arrived.inspections, "h": Inspection(30)}), 5.0))


def test_a_models_draft_counts_in_the_memory_it_needs() -> None:
    """m (1 GiB) fits 1.6 GiB alone; with a 0.5 GiB draft beside it, it does not."""
    alone = facts(1.6, models=("m", "d"), asked=("m",))
    drafted = replace(alone, on_disk={**alone.on_disk, "d": model("d", 0.5)}, drafts={"m": "/models/d.gguf"})
    assert plan(view(), replace(alone, on_disk=drafted.on_disk), 0.0).memory.assignments[0].mode == Mode.SOLO
    assert plan(view(), drafted, 0.0).memory.assignments[0].mode == Mode.UNSERVED

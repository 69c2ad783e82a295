"""decide(): what a node does for each model it was asked to serve, as tables."""

from dataclasses import replace

import pytest

from services.common.records import Assignment, MeshView, ModelFile, NodeRecord, Peer
from services.placement.decide import ModelAsk, decide
from services.placement.memory import GIB, memory_needed


def node(node_id: str, memory_gib: float, on_disk=("m",), assignments=(), role="serving") -> NodeRecord:
    return NodeRecord(
        node_id=node_id, name=node_id, role=role, memory_offered_bytes=int(memory_gib * GIB), models_on_disk=tuple(on_disk), assignments=tuple(assignments)
    )


def view(own: NodeRecord, *peers: NodeRecord, rtt: float = 0.002) -> MeshView:
    return MeshView(own=own, peers=tuple(Peer(p, f"{p.node_id}:1", "alive", rtt) for p in peers))


def run(v: MeshView, sizes_gib: list[float], force: bool = False, dropped=frozenset()) -> tuple[Assignment, ...]:
    asks = [ModelAsk(f"m{i}" if len(sizes_gib) > 1 else "m", int(size * GIB), 30) for i, size in enumerate(sizes_gib)]
    return decide(v, asks, v.own.memory_offered_bytes, force_split=force, headroom=0.1, context_bytes=256 * 1024**2, dropped=dropped)


@pytest.mark.parametrize(
    ("sizes", "memory", "modes"),
    [
        ([1], 4, ["solo"]),
        ([1, 1], 3, ["solo", "solo"]),
        ([2, 1], 3, ["solo", "unserved"]),  # first come, first served; no peer to split with
        ([], 4, []),
    ],
)
def test_models_run_solo_while_they_fit(sizes, memory, modes) -> None:
    own = node("a", memory, on_disk=[f"m{i}" for i in range(len(sizes))] if len(sizes) > 1 else ["m"])
    assert [a.mode for a in run(view(own), sizes)] == modes


def test_too_big_for_one_node_the_biggest_holder_hosts_a_split() -> None:
    (host,) = run(view(node("a", 0.5), node("b", 0.4)), [0.3])
    assert (host.mode, host.host, host.workers, sum(host.layers)) == ("split-host", "a", ("b",), 30)


def test_a_worker_follows_its_hosts_published_plan() -> None:
    published = Assignment("m", "split-host", "", "a", ("b",), (16, 14))
    (worker,) = run(view(node("b", 0.4), node("a", 0.5, assignments=[published])), [0.3])
    assert (worker.mode, worker.host) == ("split-worker", "a")
    asked = Assignment("m", "unserved", "")  # a was asked for the model too and has not planned the split yet
    (waiting,) = run(view(node("b", 0.4), node("a", 0.5, assignments=[asked])), [0.3])
    assert waiting.mode == "unserved" and "a would host" in waiting.reason


def test_split_is_forced_and_drop_wins() -> None:
    assert run(view(node("a", 4), node("b", 4)), [0.1], force=True)[0].mode == "split-host"
    assert run(view(node("a", 4)), [0.1], dropped=frozenset({"m"}))[0].mode == "dropped"


def test_clients_and_nodes_without_the_file_are_never_workers() -> None:
    (alone,) = run(view(node("a", 0.5), node("c", 0, role="client"), node("d", 8, on_disk=())), [0.3])
    assert alone.mode == "unserved" and "needs" in alone.reason


def test_memory_needed_adds_headroom_and_context() -> None:
    assert memory_needed(1000, 0.1, 50) == 1150


def test_a_host_keeps_its_split_while_its_workers_stay() -> None:
    running = Assignment("m", "split-host", "", "a", ("c",), (20, 10))
    (kept,) = run(view(node("a", 0.5, assignments=[running]), node("b", 0.4), node("c", 0.4)), [0.3])
    assert kept == running
    (replanned,) = run(view(node("a", 0.5, assignments=[running]), node("b", 0.4)), [0.3])
    assert replanned.mode == "split-host" and replanned.workers == ("b",)


def moe_ask(size_gib: float = 3.0) -> ModelAsk:
    """16 experts of 0.1 GiB over all 4 layers (0.025 GiB each per layer), a 1.4 GiB trunk."""
    from services.placement.decide import MoEAsk

    ranking = tuple(tuple(range(16))[::-1] if layer % 2 else tuple(range(16)) for layer in range(4))
    return ModelAsk("m", int(size_gib * GIB), 4, moe=MoEAsk(16, 2, int(0.025 * GIB), int(1.4 * GIB), ranking))


def test_an_moe_model_too_big_for_each_node_is_split_by_experts_never_over_rpc() -> None:
    a, b = node("a", 3), node("b", 3)  # each holds the trunk and ~11 experts per layer
    (plan,) = decide(view(a, b), [moe_ask()], a.memory_offered_bytes, force_split=False, headroom=0.1, context_bytes=256 * 1024**2)
    assert plan.mode == "moe-shard" and plan.host == "a" and [node for node, _ in plan.shards] == ["a", "b"]
    for layer in range(4):
        assert set(plan.shards[0][1][layer]) | set(plan.shards[1][1][layer]) == set(range(16))
    # b serves its own shard from a's published plan.
    (mine,) = decide(
        view(b, replace(a, assignments=(plan,))), [moe_ask()], b.memory_offered_bytes, force_split=False, headroom=0.1, context_bytes=256 * 1024**2
    )
    assert mine.mode == "moe-shard" and mine.shards == (("b", plan.experts_of("b")),)
    # Before a has published, b waits for the planner.
    (waiting,) = decide(view(b, a), [moe_ask()], b.memory_offered_bytes, force_split=False, headroom=0.1, context_bytes=256 * 1024**2)
    assert waiting.mode == "unserved" and "a plans an expert split" in waiting.reason


def test_an_moe_split_that_cannot_cover_every_expert_is_unserved_with_the_reason() -> None:
    a, b = node("a", 2.2), node("b", 2.2)  # room for ~5 experts each: below the 8 a shard needs
    (plan,) = decide(view(a, b), [moe_ask()], a.memory_offered_bytes, force_split=False, headroom=0.1, context_bytes=256 * 1024**2)
    assert plan.mode == "unserved" and "no expert split fits" in plan.reason


def test_an_moe_model_that_fits_runs_solo_unless_split_is_forced() -> None:
    a, b = node("a", 8), node("b", 8)
    (solo,) = decide(view(a, b), [moe_ask()], a.memory_offered_bytes, force_split=False, headroom=0.1, context_bytes=256 * 1024**2)
    assert solo.mode == "solo"
    (forced,) = decide(view(a, b), [moe_ask()], a.memory_offered_bytes, force_split=True, headroom=0.1, context_bytes=256 * 1024**2)
    assert forced.mode == "moe-shard" and all(len(layers[0]) == 16 for _, layers in forced.shards)


SOURCE = "org/m-GGUF/m.gguf"


def fetching_run(v: MeshView, catalog: bool, force: bool = False) -> tuple[Assignment, ...]:
    """The model as a host that downloaded it from the Hub plans it (catalog: a catalog entry's file)."""
    ask = ModelAsk("m", int(0.3 * GIB), 30, fingerprint="f1", source=SOURCE, catalog=catalog)
    return decide(v, [ask], v.own.memory_offered_bytes, force_split=force, headroom=0.1, context_bytes=256 * 1024**2)


@pytest.mark.parametrize(
    ("policy", "catalog", "mode", "workers"),
    [
        ("catalog", True, "split-host", ("b",)),  # a catalog model: b fetches its layers
        ("any", False, "split-host", ("b",)),  # any Hub file, for a node that allows any
        ("catalog", False, "unserved", ()),  # not a catalog model: b allows only those
        ("never", True, "unserved", ()),  # b downloads nothing for the mesh
    ],
)
def test_a_peer_without_the_file_works_for_a_split_when_its_download_policy_allows(policy, catalog, mode, workers) -> None:
    fetcher = replace(node("b", 0.4, on_disk=()), download_policy=policy)
    (host,) = fetching_run(view(node("a", 0.5), fetcher), catalog)
    assert (host.mode, host.workers) == (mode, workers)
    if mode == "split-host":
        assert host.source == SOURCE  # where the worker fetches from


def test_holders_of_the_file_are_taken_before_peers_that_would_fetch_it() -> None:
    fetcher = replace(node("b", 0.4, on_disk=()), download_policy="catalog")
    holder = replace(node("c", 0.4), model_files=(ModelFile("m", "f1"),))
    (host,) = fetching_run(view(node("a", 0.5), fetcher, holder), catalog=True)
    assert host.workers == ("c",)
    # A model without a Hub source (a local file): nobody can fetch it.
    ask = ModelAsk("m", int(0.3 * GIB), 30, fingerprint="f1")
    (alone,) = decide(view(node("a", 0.5), fetcher), [ask], int(0.5 * GIB), force_split=False, headroom=0.1, context_bytes=256 * 1024**2)
    assert alone.mode == "unserved"


def test_a_fetcher_named_in_a_plan_lends_itself_with_the_source_and_never_hosts() -> None:
    published = Assignment("m", "split-host", "", "a", ("b",), (16, 14), source=SOURCE)
    own = replace(node("b", 0.4, on_disk=()), download_policy="catalog")
    v = view(own, node("a", 0.5, assignments=[published]))
    (lent,) = decide(v, [], int(0.4 * GIB), force_split=False, headroom=0.1, context_bytes=0, held=frozenset())
    assert (lent.mode, lent.host, lent.source) == ("split-worker", "a", SOURCE)
    refusing = replace(own, download_policy="never")
    assert decide(view(refusing, node("a", 0.5, assignments=[published])), [], int(0.4 * GIB), force_split=False, headroom=0.1, context_bytes=0) == ()

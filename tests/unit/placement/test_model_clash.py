"""One model means one file: nodes with another file under a model's name are never in its split or
shard plan, the fingerprints travel in records, and /v1/models shows a clash."""

from dataclasses import replace

import pytest

from services.common.records import Assignment, MeshView, ModelFile, NodeRecord, Peer, SelfUpdate, ServedModel
from services.common.records_proto import record_from_proto, record_to_proto, update_from_proto, update_to_proto
from services.gateway.openai.models.listing import model_list
from services.placement.decide import ModelAsk, MoEAsk, decide
from services.placement.holders import Holder
from services.placement.memory import GIB
from services.placement.split import plan_split

OURS, THEIRS = "aaaa000000000000", "bbbb000000000000"


def near(a: str, b: str) -> float:
    return 0.002


@pytest.mark.parametrize(
    ("holders", "force", "mode", "workers"),
    [
        ([("a", 4, OURS), ("b", 2, OURS)], True, "split-host", ("b",)),  # the same file: a split as ever
        ([("a", 4, OURS), ("b", 2, THEIRS)], True, "unserved", ()),  # another file under the name: no split
        ([("a", 4, OURS), ("b", 2, THEIRS), ("c", 2, OURS)], True, "split-host", ("c",)),  # only the same file's holders
        ([("a", 4, OURS), ("b", 9, THEIRS)], False, "solo", ()),  # b has more memory, but it holds another model
        ([("a", 4, OURS), ("b", 2, "")], True, "unserved", ()),  # a node that sent no fingerprint proves nothing
        ([("b", 9, THEIRS)], False, "unserved", ()),  # nobody has our file
    ],
)
def test_a_split_is_planned_over_holders_of_the_planning_nodes_file_only(holders, force, mode, workers) -> None:
    plan = plan_split(GIB, 30, [Holder(n, int(gib * GIB), fp) for n, gib, fp in holders], near, force_split=force, fingerprint=OURS)
    assert (plan.mode, plan.workers) == (mode, workers), plan.reason
    if mode == "split-host":
        assert set(plan.layers) == {"a", *workers}
    if mode == "unserved":
        assert "another file under this name" in plan.reason and THEIRS in plan.reason or "b (file without fingerprint)" in plan.reason


def node(node_id: str, memory_gib: float, fingerprint: str, assignments=()) -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        name=node_id,
        role="serving",
        memory_offered_bytes=int(memory_gib * GIB),
        models_on_disk=("m",),
        model_files=(ModelFile("m", fingerprint),),
        assignments=tuple(assignments),
    )


def view(own: NodeRecord, *peers: NodeRecord) -> MeshView:
    return MeshView(own=own, peers=tuple(Peer(p, f"{p.node_id}:1", "alive", 0.002) for p in peers))


def dense(fingerprint: str = OURS) -> ModelAsk:
    return ModelAsk("m", int(0.3 * GIB), 30, fingerprint=fingerprint)


def plan_of(v: MeshView, ask: ModelAsk, force: bool = False) -> Assignment:
    (assignment,) = decide(v, [ask], v.own.memory_offered_bytes, force_split=force, headroom=0.1, context_bytes=256 * 1024**2)
    return assignment


@pytest.mark.parametrize(
    ("peer_file", "mode", "workers"),
    [
        (OURS, "split-host", ("b",)),
        (THEIRS, "unserved", ()),
    ],
)
def test_decide_splits_only_over_peers_with_the_same_file(peer_file: str, mode: str, workers: tuple) -> None:
    planned = plan_of(view(node("a", 0.5, OURS), node("b", 0.4, peer_file)), dense())
    assert (planned.mode, planned.workers) == (mode, workers), planned.reason
    if mode == "unserved":
        assert "b (file bbbb000000000000) holds another file under this name than ours (aaaa000000000000)" in planned.reason


def test_a_bigger_peer_with_another_file_is_not_our_host_nor_do_we_work_for_it() -> None:
    # b has more memory; with the same file it would host. With another file it hosts another model:
    # a plans for itself, and b's published plan that names a (an older b, or a mistake) is ignored.
    theirs = Assignment("m", "split-host", "", "b", ("a",), (20, 10))
    own = node("a", 0.5, OURS)
    assert plan_of(view(own, node("b", 0.9, OURS, [theirs])), dense()).mode == "split-worker"
    mine = plan_of(view(own, node("b", 0.9, THEIRS, [theirs])), dense())
    assert mine.mode == "unserved" and "needs" in mine.reason and "b (file bbbb000000000000)" in mine.reason


def test_a_host_drops_a_worker_whose_file_changed() -> None:
    running = Assignment("m", "split-host", "", "a", ("b",), (16, 14))
    a = node("a", 0.5, OURS, [running])
    assert plan_of(view(a, node("b", 0.4, OURS)), dense()) == running
    assert plan_of(view(a, node("b", 0.4, THEIRS)), dense()).mode == "unserved"


def moe_ask() -> ModelAsk:
    """16 experts of 0.025 GiB per layer over 4 layers, a 1.4 GiB trunk: two 3 GiB nodes share it."""
    ranking = tuple(tuple(range(16)) for _ in range(4))
    return ModelAsk("m", 3 * GIB, 4, moe=MoEAsk(16, 2, int(0.025 * GIB), int(1.4 * GIB), ranking), fingerprint=OURS)


@pytest.mark.parametrize(
    ("peer_file", "mode", "shards"),
    [
        (OURS, "moe-shard", ["a", "b"]),
        (THEIRS, "unserved", []),
    ],
)
def test_an_expert_split_is_planned_over_nodes_with_the_same_file_only(peer_file: str, mode: str, shards: list) -> None:
    planned = plan_of(view(node("a", 3, OURS), node("b", 3, peer_file)), moe_ask())
    assert (planned.mode, [n for n, _ in planned.shards]) == (mode, shards), planned.reason
    if mode == "unserved":
        assert "b (file bbbb000000000000) holds another file" in planned.reason


def test_fingerprints_survive_protobuf() -> None:
    record = NodeRecord(
        node_id="n1",
        name="box",
        models_on_disk=("m",),
        model_files=(ModelFile("m", OURS),),
        served=(ServedModel("m", "/m.gguf", "ready", 1, fingerprint=OURS),),
        version=2,
    )
    assert record_from_proto(record_to_proto(record)) == record
    assert record.fingerprint_of("m") == OURS and record.fingerprint_of("other") == ""
    update = SelfUpdate(frozenset({"models_on_disk", "model_files"}), {"models_on_disk": ("m",), "model_files": record.model_files})
    assert update_from_proto(update_to_proto(update)) == update


def serving(node_id: str, fingerprint: str, model: str = "m") -> NodeRecord:
    return NodeRecord(node_id=node_id, name=f"box-{node_id}", served=(ServedModel(model, "/x.gguf", "ready", 1, fingerprint=fingerprint),))


def test_models_lists_a_name_once_and_shows_a_clash_with_each_nodes_file() -> None:
    listed = model_list(view(serving("a", OURS), serving("b", THEIRS), serving("c", OURS), serving("d", OURS, "other")))
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["m", "other"]
    clash, other = listed["data"]
    assert clash["object"] == "model" and clash["fingerprints"] == [OURS, THEIRS]
    assert {(n["node_id"], n["fingerprint"]) for n in clash["nodes"]} == {("a", OURS), ("b", THEIRS), ("c", OURS)}
    assert "2 different files" in clash["clash"]
    assert other["fingerprints"] == [OURS] and "clash" not in other


def test_no_clash_for_one_file_on_many_nodes_nor_for_a_node_without_fingerprint() -> None:
    (entry,) = model_list(view(serving("a", OURS), serving("b", OURS), replace(serving("c", ""), name="old")))["data"]
    assert entry["fingerprints"] == [OURS] and "clash" not in entry and len(entry["nodes"]) == 3

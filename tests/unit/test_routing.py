import pytest

from services.common.records import MeshView, NodeRecord, Peer, ServedModel
from services.gateway.routing import AFFINITY_SLACK, NotReady, Target, UnknownModel, local_port_of, route


def record(node_id: str, *served: ServedModel) -> NodeRecord:
    return NodeRecord(node_id=node_id, name=node_id, served=served)


def ready(model: str, port: int = 1) -> ServedModel:
    return ServedModel(model, "/p", "ready", port=port)


def view(own: tuple[ServedModel, ...] = (), peers: tuple[Peer, ...] = ()) -> MeshView:
    return MeshView(own=record("me", *own), peers=peers)


def peer(node_id: str, *served: ServedModel, rtt: float = 0.01, status: str = "alive") -> Peer:
    return Peer(record(node_id, *served), f"{node_id}:7000", status, rtt)


def first(decision) -> Target:
    assert isinstance(decision, list), decision
    return decision[0]


def test_local_ready_server_comes_first_case_insensitively() -> None:
    decision = route(view((ready("SmolLM2", 8001),), (peer("b", ready("SmolLM2")),)), "smollm2", now=0)
    assert first(decision) == Target("SmolLM2", "me", 8001) and first(decision).local


@pytest.mark.parametrize(
    ("asked", "served", "expected"),
    [
        ("smollm2", ("SmolLM2-135M-Instruct",), "SmolLM2-135M-Instruct"),  # catalog alias
        ("qwen", ("Qwen3-8B", "SmolLM2"), "Qwen3-8B"),  # unique prefix
        ("8b", ("Qwen3-8B", "SmolLM2"), "Qwen3-8B"),  # unique substring, as --model reads names
        ("QWEN3-8B", ("Qwen3-8B",), "Qwen3-8B"),
        ("qwen3-8b", ("Qwen3-8B", "Qwen3-8B-Q8_0"), "Qwen3-8B"),  # exact beats substring
    ],
)
def test_names_resolve_by_alias_and_unique_substring(asked: str, served: tuple[str, ...], expected: str) -> None:
    assert first(route(view(tuple(ready(m) for m in served)), asked, now=0)).model_id == expected


def test_ambiguous_substring_and_unknown_model_list_what_is_served() -> None:
    assert route(view((ready("Qwen3-8B"), ready("Qwen3-4B"))), "qwen", now=0) == UnknownModel(("Qwen3-4B", "Qwen3-8B"), ("Qwen3-4B", "Qwen3-8B"))
    assert route(view((ready("Qwen3-8B"), ready("Llama-8B"))), "8b", now=0) == UnknownModel(("Llama-8B", "Qwen3-8B"), ("Llama-8B", "Qwen3-8B"))
    assert route(view((ready("b"),), (peer("p", ready("a")),)), "zzz", now=0) == UnknownModel(("a", "b"))


def test_remote_servers_by_load_then_rtt() -> None:
    peers = (peer("far", ready("m"), rtt=0.05), peer("near", ready("m"), rtt=0.01))
    assert [t.node_id for t in route(view(peers=peers), "m", now=0)] == ["near", "far"]
    assert first(route(view(peers=peers), "m", now=0, loads={"near": 2, "far": 1})).node_id == "far"
    assert first(route(view(peers=peers), "m", now=0)).address == "near:7000"


def test_affinity_keeps_a_session_on_one_node_and_spreads_sessions() -> None:
    peers = tuple(peer(f"n{i}", ready("m")) for i in range(4))
    chosen = {first(route(view(peers=peers), "m", now=0, affinity=f"user:{u}", loads={"n0": 2})).node_id for u in range(40)}
    assert len(chosen) == 4  # different users land on different nodes
    for user in ("alice", "bob"):
        picks = {first(route(view(peers=peers), "m", now=0, affinity=f"user:{user}", loads=load)).node_id for load in ({}, {"n1": 2}, {"n2": 1, "n3": 2})}
        assert len(picks) == 1  # the same user always lands on the same node while loads stay within the slack


def test_a_session_gives_way_only_when_its_node_is_crowded() -> None:
    """Bounded-load rendezvous: sessions that hash alike (one shared opening) cannot pile onto one node."""
    peers = tuple(peer(f"n{i}", ready("m")) for i in range(3))
    home = first(route(view(peers=peers), "m", now=0, affinity="conversation:x")).node_id
    others = [f"n{i}" for i in range(3) if f"n{i}" != home]
    at_slack = {home: AFFINITY_SLACK}
    assert first(route(view(peers=peers), "m", now=0, affinity="conversation:x", loads=at_slack)).node_id == home
    crowded = {home: AFFINITY_SLACK + 1}
    moved = first(route(view(peers=peers), "m", now=0, affinity="conversation:x", loads=crowded)).node_id
    assert moved in others
    # Everyone busy alike: back home.
    even = {node: 5 for node in (home, *others)}
    assert first(route(view(peers=peers), "m", now=0, affinity="conversation:x", loads=even)).node_id == home


def test_dead_suspect_and_excluded_peers_are_not_targets() -> None:
    peers = (peer("a", ready("m"), status="suspect"), peer("b", ready("m")))
    assert [t.node_id for t in route(view(peers=peers), "m", now=0)] == ["b"]
    assert route(view(peers=peers), "m", now=0, exclude=frozenset({"b"})) == NotReady("m", "ready", 1)


def test_failed_model_says_when_to_retry() -> None:
    decision = route(view((ServedModel("m", "/p", "failed", retry_at=104.2),)), "m", now=100.0)
    assert decision == NotReady("m", "failed", 5)


def test_tunnel_end_serves_only_its_own_ready_models() -> None:
    here = view((ready("m", 9001), ServedModel("s", "/p", "starting")))
    assert local_port_of(here, "m") == (9001, 0, "")
    assert local_port_of(here, "s")[:2] == (0, 503)
    assert local_port_of(here, "x")[:2] == (0, 503)


def test_moe_shards_are_chosen_by_session_not_by_locality() -> None:
    from services.common.records import Assignment, MeshView, NodeRecord, Peer, ServedModel
    from services.gateway.routing import route

    def shard_node(node_id: str) -> NodeRecord:
        return NodeRecord(
            node_id, node_id, "serving", served=(ServedModel("moe", "/m.gguf", "ready", 9000),), assignments=(Assignment("moe", "moe-shard", "shard"),)
        )

    view = MeshView(own=shard_node("a"), peers=(Peer(shard_node("b"), "b:1", "alive", 0.001),))
    firsts = {route(view, "moe", 0.0, affinity=f"user-{i}")[0].node_id for i in range(40)}
    assert firsts == {"a", "b"}
    assert {route(view, "moe", 0.0, affinity="same")[0].node_id for _ in range(5)} == {route(view, "moe", 0.0, affinity="same")[0].node_id}

"""promotions(): which models a standby node serves for the mesh's demand, as tables."""

from dataclasses import replace

import pytest

from services.common.records import Assignment, MeshView, ModelDemand, NodeRecord, Peer, ServedModel
from services.placement.memory import GIB
from services.placement.promotion import Rules, promotions

NEED = {"X": 1 * GIB, "Y": 1 * GIB}


def standby(node_id: str, memory_gib: float = 4, on_disk=("X", "Y")) -> NodeRecord:
    return NodeRecord(node_id, node_id, "standby", int(memory_gib * GIB), tuple(on_disk))


def server(node_id: str, *models: str, state: str = "ready") -> NodeRecord:
    return NodeRecord(
        node_id,
        node_id,
        "serving",
        8 * GIB,
        ("X", "Y"),
        served=tuple(ServedModel(m, f"/{m}.gguf", state, 9000) for m in models),
        assignments=tuple(Assignment(m, "solo", "fits") for m in models),
    )


def view(own: NodeRecord, *peers: NodeRecord, demand=(), dead=()) -> MeshView:
    listed = [Peer(p, f"{p.node_id}:1", "alive") for p in peers] + [Peer(p, f"{p.node_id}:1", "dead") for p in dead]
    return MeshView(own=own, peers=tuple(listed), demand=tuple(demand))


def wanted(v: MeshView, current=None, needs=NEED) -> list[str]:
    return sorted(promotions(v, needs, current or {}, Rules(hot_ratio=3.0, hot_requests=10)))


ASKED_X = ModelDemand("X", requests=3, recent=3, last_seen=1.0)


@pytest.mark.parametrize(
    ("own", "peers", "demand", "expected"),
    [
        (standby("a"), [], [ASKED_X], ["X"]),  # demand, no server: the only standby takes it
        (standby("a"), [], [], []),  # no demand: nothing
        (standby("a"), [server("s", "X")], [ASKED_X], []),  # already served
        (standby("a"), [server("s", "X", state="starting")], [ASKED_X], []),  # loading counts as served
        (standby("a", on_disk=("Y",)), [], [ASKED_X], []),  # not on this node's disk
        (standby("a", memory_gib=0.5), [], [ASKED_X], []),  # does not fit
        (standby("a", memory_gib=8), [standby("b", memory_gib=2)], [ASKED_X], []),  # b fits tighter: b takes it
        (standby("b", memory_gib=2), [standby("a", memory_gib=8)], [ASKED_X], ["X"]),
        (standby("b"), [standby("a")], [ASKED_X], []),  # a tie: the lower node id takes it
        (standby("a"), [standby("b")], [ASKED_X], ["X"]),
        (standby("a"), [standby("b", on_disk=())], [ASKED_X], ["X"]),  # b cannot: a takes it
        (replace(standby("a"), role="client"), [], [ASKED_X], []),  # clients serve nothing
        (standby("a"), [], [ModelDemand("X", pinned=True)], ["X"]),  # pinned by a live node that cannot serve it
    ],
)
def test_unserved_demand_goes_to_exactly_one_best_fitting_standby(own, peers, demand, expected) -> None:
    assert wanted(view(own, *peers, demand=demand)) == expected


def test_a_dead_server_does_not_count() -> None:
    assert wanted(view(standby("a"), demand=[ASKED_X], dead=[server("s", "X")])) == ["X"]


def test_a_node_with_models_of_its_own_is_no_standby() -> None:
    own = replace(server("a", "Y"), served=())
    assert wanted(view(own, demand=[ASKED_X])) == []


@pytest.mark.parametrize(
    ("x_recent", "y_recent", "x_servers", "expected"),
    [
        (30, 0, 1, ["X"]),  # a burst on X while Y idles
        (9, 0, 1, []),  # below the request floor
        (30, 10, 1, ["X"]),  # exactly 3x
        (29, 10, 1, []),  # under 3x: steady load on both moves nothing
        (50, 10, 2, []),  # 25 per server vs 10: the second server cooled it
    ],
)
def test_rebalance_brings_a_standby_to_a_hot_model(x_recent, y_recent, x_servers, expected) -> None:
    servers = [server(f"s{i}", "X") for i in range(x_servers)] + [server("t", "Y")]
    demand = [ModelDemand("X", x_recent, x_recent, 1.0), ModelDemand("Y", y_recent, y_recent, 1.0)]
    assert wanted(view(standby("a"), *servers, demand=demand)) == expected


def test_one_served_model_alone_is_never_hot() -> None:
    assert wanted(view(standby("a"), server("s", "X"), demand=[ModelDemand("X", 100, 100, 1.0)])) == []


def test_a_promotion_is_kept_while_demand_lasts_and_dropped_after() -> None:
    current = {"X": "demand"}
    served_elsewhere_too = view(standby("a"), server("s", "X"), demand=[ASKED_X])
    assert wanted(served_elsewhere_too, current) == ["X"]  # no flapping once serving
    assert wanted(view(standby("a"), server("s", "X")), current) == []  # demand past its TTL


def fetching(v: MeshView, on_hub=NEED, needs=None) -> list[str]:
    """What a node that holds `needs` may serve when X and Y are catalog models it could download."""
    return sorted(promotions(v, needs or {}, {}, Rules(), on_hub))


def may_fetch(node_id: str, memory_gib: float = 4, on_disk=(), policy: str = "catalog") -> NodeRecord:
    return replace(standby(node_id, memory_gib, on_disk), download_policy=policy)


@pytest.mark.parametrize(
    ("own", "peers", "expected"),
    [
        (may_fetch("a"), [], ["X"]),  # nobody holds X: the standby that may download it takes it
        (may_fetch("a"), [standby("b")], []),  # b holds it and fits: b serves it, nothing is downloaded
        (may_fetch("a"), [standby("b", memory_gib=0.5)], ["X"]),  # b holds it but does not fit
        (may_fetch("a", policy="never"), [], []),  # a downloads nothing for the mesh
        (may_fetch("a", memory_gib=8), [may_fetch("b", memory_gib=2)], []),  # b fits tighter and may download too
        (may_fetch("a", memory_gib=8), [may_fetch("b", memory_gib=2, policy="never")], ["X"]),  # b may not
    ],
)
def test_a_catalog_model_nobody_holds_goes_to_a_standby_that_may_download_it(own, peers, expected) -> None:
    assert fetching(view(own, *peers, demand=[ASKED_X])) == expected


def test_the_reason_says_the_model_is_downloaded_first() -> None:
    own = replace(standby("a", on_disk=()), download_policy="catalog")
    (reason,) = promotions(view(own, demand=[ASKED_X]), {}, {}, Rules(), NEED).values()
    assert "downloads the model first" in reason

"""A split's workers from both ends, as tables: a node named in a live peer's plan lends itself to it
whatever it was asked; a host leaves out a worker that does not come up within the bound."""

from dataclasses import replace

import pytest

from services.common.records import Assignment, MeshView, NodeRecord, Peer, ServedModel
from services.placement.decide import ModelAsk, decide
from services.placement.memory import GIB
from services.placement.workers import late_workers

PLAN = Assignment("m", "split-host", "", "a", ("b",), (20, 10))
PART = Assignment("m", "split-worker", "lends its memory to a's split", "a", ("b",), (20, 10))


def node(node_id: str, memory_gib: float = 0.5, on_disk=("m",), assignments=(), served=(), role="serving") -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        name=node_id,
        role=role,
        memory_offered_bytes=int(memory_gib * GIB),
        models_on_disk=tuple(on_disk),
        assignments=tuple(assignments),
        served=tuple(served),
    )


def view(own: NodeRecord, *peers: NodeRecord, status: str = "alive") -> MeshView:
    return MeshView(own=own, peers=tuple(Peer(p, f"{p.node_id}:1", status, 0.002) for p in peers))


def place(v: MeshView, asks=(), force=False, held=frozenset({"m"}), dropped=frozenset(), excluded=frozenset()) -> tuple[Assignment, ...]:
    return decide(
        v, list(asks), v.own.memory_offered_bytes, force_split=force, headroom=0.1, context_bytes=256 * 1024**2, dropped=dropped, held=held, excluded=excluded
    )


ASK = ModelAsk("m", int(0.1 * GIB), 30)  # fits one node: solo unless --split


@pytest.mark.parametrize(
    ("v", "asks", "held", "dropped", "expected"),
    [
        # The case: B joined with the model on disk and no --model; A's plan names it.
        (view(node("b"), node("a", assignments=[PLAN])), [], {"m"}, set(), (PART,)),
        (view(node("b"), node("a", assignments=[PLAN])), [], set(), set(), ()),  # not on its disk (or a client): nothing to lend
        (view(node("b"), node("a", assignments=[replace(PLAN, workers=("c",))])), [], {"m"}, set(), ()),  # names another node
        (view(node("b"), node("a", assignments=[PLAN]), status="suspect"), [], {"m"}, set(), (PART,)),  # a suspect host is still a member
        (view(node("b")), [], {"m"}, set(), ()),  # no host in the view (dead or left)
        (view(node("b"), node("a", assignments=[PLAN])), [], {"m"}, {"m"}, ()),  # dropped here
        # Serving it alone for demand gives way: the host serves it.
        (view(node("b"), node("a", assignments=[PLAN])), [replace(ASK, promoted="demand")], {"m"}, set(), (PART,)),
        # Its own --model decided first: it fits here and runs solo.
        (view(node("b"), node("a", assignments=[PLAN])), [ASK], {"m"}, set(), (Assignment("m", "solo", "fits: needs 0.36 GiB of 0.50 GiB offered"),)),
    ],
)
def test_a_node_named_in_a_live_peers_plan_lends_itself_whatever_it_was_asked(v, asks, held, dropped, expected) -> None:
    assert place(v, asks, held=frozenset(held), dropped=frozenset(dropped)) == expected


def test_two_hosts_naming_one_node_every_node_picks_the_lowest_id() -> None:
    other = Assignment("m", "split-host", "", "c", ("b",), (25, 5))
    (part,) = place(view(node("b"), node("c", assignments=[other]), node("a", assignments=[PLAN])))
    assert (part.mode, part.host, part.layers) == ("split-worker", "a", (20, 10))


@pytest.mark.parametrize(
    ("peers", "excluded", "mode", "workers"),
    [
        ([node("b")], set(), "split-host", ("b",)),  # --split with a worker at hand
        ([node("b")], {"b"}, "solo", ()),  # its only worker did not come up: solo, as it fits
        ([node("b"), node("c", 0.4)], {"b"}, "split-host", ("c",)),  # another worker instead
    ],
)
def test_a_forced_split_plans_without_the_workers_left_out(peers, excluded, mode, workers) -> None:
    (assignment,) = place(view(node("a"), *peers), [ASK], force=True, excluded=frozenset(excluded))
    assert (assignment.mode, assignment.workers) == (mode, workers), assignment.reason


def test_a_split_that_cannot_run_without_the_worker_left_out_is_unserved() -> None:
    big = ModelAsk("m", int(0.3 * GIB), 30)  # fits no single node
    (assignment,) = place(view(node("a"), node("b")), [big], excluded=frozenset({"b"}))
    assert assignment.mode == "unserved"


def test_a_running_split_whose_worker_is_left_out_is_planned_again() -> None:
    running = node("a", assignments=[PLAN])
    assert place(view(running, node("b"), node("c", 0.4)), [ASK], force=True)[0] == PLAN  # it stands while b may come up
    (again,) = place(view(running, node("b"), node("c", 0.4)), [ASK], force=True, excluded=frozenset({"b"}))
    assert (again.mode, again.workers) == ("split-host", ("c",))


def rpc(state: str, restarts: int = 0) -> ServedModel:
    return ServedModel("m", "/m.gguf", state, port=5000, restarts=restarts, kind="rpc-server")


@pytest.mark.parametrize(
    ("worker", "waits"),
    [
        (node("b"), True),  # never took the plan (a node that ignores it)
        (node("b", assignments=[PART]), False),  # took it and primes: no rpc-server yet
        (node("b", assignments=[PART], served=[rpc("starting")]), False),
        (node("b", assignments=[PART], served=[rpc("ready")]), False),
        (node("b", assignments=[PART], served=[rpc("failed", 1)]), True),  # cannot start its rpc-server
        (node("b", assignments=[PART], served=[rpc("starting", 2)]), True),  # restarting after failures
        (node("b", assignments=[replace(PART, host="c")], served=[rpc("starting")]), True),  # works for another host
    ],
)
def test_a_worker_that_shows_no_sign_of_coming_up_is_late_after_the_bound(worker, waits) -> None:
    v = view(node("a", assignments=[PLAN]), worker)
    clocks, late = late_workers(v, [PLAN], {}, now=100.0, bound=60.0)
    assert clocks == ({("m", "b"): 100.0} if waits else {})
    assert late == frozenset()
    clocks, late = late_workers(v, [PLAN], clocks, now=159.0, bound=60.0)
    assert late == frozenset()
    _, late = late_workers(v, [PLAN], clocks, now=160.0, bound=60.0)
    assert late == (frozenset({"b"}) if waits else frozenset())


def test_a_worker_that_comes_up_stops_its_clock_and_a_lost_one_is_no_clock_matter() -> None:
    clocks, _ = late_workers(view(node("a"), node("b")), [PLAN], {}, now=100.0, bound=60.0)
    up = node("b", assignments=[PART], served=[rpc("ready")])
    assert late_workers(view(node("a"), up), [PLAN], clocks, now=170.0, bound=60.0) == ({}, frozenset())
    assert late_workers(view(node("a")), [PLAN], clocks, now=170.0, bound=60.0) == ({}, frozenset())  # gone from the view
    # A suspect worker that was up stays up: no clock starts for a missed probe.
    assert late_workers(view(node("a"), up, status="suspect"), [PLAN], clocks, now=170.0, bound=60.0) == ({}, frozenset())
    assert late_workers(view(node("a"), node("b")), [], clocks, now=170.0, bound=60.0) == ({}, frozenset())  # no split any more


@pytest.mark.parametrize(("lender_id", "lender_gib"), [("0", 0.5), ("b", 2.0)])
def test_the_node_asked_for_the_model_hosts_even_when_a_lender_outranks_it(lender_id, lender_gib) -> None:
    """A lender with a lower id (equal memory) or more memory never plans for the model: were it
    the host, nobody would host and the model would stay unserved."""
    big = ModelAsk("m", int(0.3 * GIB), 30)  # fits no single node of 0.5 GiB
    (plan,) = place(view(node("a"), node(lender_id, lender_gib)), [big])
    assert (plan.mode, plan.host, plan.workers) == ("split-host", "a", (lender_id,)), plan.reason
    (part,) = place(view(node(lender_id, lender_gib), node("a", assignments=[plan])))
    assert (part.mode, part.host) == ("split-worker", "a")

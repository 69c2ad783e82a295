"""Demand-aware placement: standby nodes serve what the mesh asks for, failover, the demand map."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from services.gossip.settings import TEST
from tests.conftest import SMOLLM2
from tests.e2e.test_routing import OTHER, other_model

pytestmark = pytest.mark.e2e
HELLO = [{"role": "user", "content": "Say hi."}]


def ask(node, model: str = SMOLLM2) -> int:
    try:
        response = httpx.post(f"{node.api}/v1/chat/completions", json={"model": model, "messages": HELLO, "max_tokens": 2}, timeout=30)
    except httpx.HTTPError:
        return 0
    return response.status_code


def serves(node, model: str = SMOLLM2, states=("starting", "ready")) -> bool:
    try:
        return any(m["model_id"] == model and m["kind"] == "llama-server" and m["state"] in states for m in node.status()["models"])
    except (httpx.HTTPError, ValueError):
        return False


def demand_of(node, model: str) -> dict | None:
    try:
        return next((d for d in node.status()["demand"] if d["model_id"] == model), None)
    except (httpx.HTTPError, ValueError):
        return None


def listed(node) -> list[str]:
    try:
        return [m["id"] for m in httpx.get(f"{node.api}/v1/models", timeout=5).json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError):
        return []


def ready_in_view(node) -> set[str]:
    """Models some node serves, ready, as this node's gossip view has it (asks nothing)."""
    try:
        data = httpx.get(f"{node.api}/v1/models", timeout=5).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError):
        return set()
    return {m["id"] for m in data if any(n["state"] == "ready" for n in m["nodes"])}


def role_of(node) -> str:
    try:
        return node.status()["role"]
    except (httpx.HTTPError, ValueError):
        return ""


def test_a_standby_joining_serves_the_demand_nobody_served(mesh_bed, tmp_path: Path) -> None:
    a = mesh_bed.start("A", "--model", other_model(tmp_path / "a"))
    a.wait_ready(OTHER)
    for _ in range(3):
        assert ask(a) == 503  # SmolLM2 is on A's disk but A serves only its own model
    mesh_bed.wait_until(lambda: (demand_of(a, SMOLLM2) or {}).get("requests") == 3, 10, "demand recorded")
    b = mesh_bed.start("B", "--standby", join=a)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(["A", "B"]), 60, "B in the mesh")
    took = mesh_bed.wait_until(lambda: serves(b, states=("ready",)), 60, "the standby serving the demanded model")
    # Once joined, the standby settles (1 s), loads the model and reports ready: about 5-10 s here
    # (llama-server's load alone took 7 s on 2 busy cores), bounded by the wait above, not timed.
    print(f"standby serving {took:.1f}s after it joined (the test profile's join_timeout: {TEST.join_timeout}s)")
    # A learns of B's server over gossip (a probe interval or so later), then routes to it.
    mesh_bed.wait_until(lambda: ask(a) == 200, 10, "A answering through B")
    (assignment,) = b.status()["assignments"]
    assert assignment["promoted"] and "no live server" in assignment["reason"] and role_of(b) == "serving"


def test_of_two_standbys_exactly_one_loads_the_model(mesh_bed, tmp_path: Path) -> None:
    a = mesh_bed.start("A", "--model", other_model(tmp_path / "a"))
    a.wait_ready(OTHER)
    assert ask(a) == 503
    mesh_bed.wait_until(lambda: demand_of(a, SMOLLM2) is not None, 10, "demand recorded")
    b = mesh_bed.start("B", "--standby", join=a)
    c = mesh_bed.start("C", "--standby", join=a)
    loaders: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(serves(n, states=("ready",)) for n in (b, c)):
        loaders.update(n.name for n in (b, c) if serves(n) or n.llama_servers())
        time.sleep(0.05)
    settle = time.monotonic() + 5  # watch a while longer: no late second load
    while time.monotonic() < settle:
        loaders.update(n.name for n in (b, c) if serves(n) or n.llama_servers())
        time.sleep(0.05)
    assert len(loaders) == 1, f"loaded by {loaders}"
    mesh_bed.wait_until(lambda: ask(a) == 200, 10, "A answering through the loader")
    (idle,) = ({"B": c, "C": b}[loaders.pop()],)
    assert role_of(idle) == "standby" and not idle.llama_servers()


def test_failover_to_a_standby_within_15_seconds_on_the_lan_profile(mesh_bed) -> None:
    a = mesh_bed.start("A", "--model", SMOLLM2, "--profile", "lan")
    a.wait_ready(SMOLLM2)
    b = mesh_bed.start("B", "--standby", "--profile", "lan", join=a)
    mesh_bed.wait_until(lambda: SMOLLM2 in listed(b), 30, "B routes to A")
    for _ in range(3):
        assert ask(b) == 200  # through B to A: demand seen by B's gateway
    assert role_of(b) == "standby" and not b.llama_servers()  # A serves it: B only holds it
    killed = time.monotonic()
    a.kill()
    while ask(b) != 200:
        assert time.monotonic() - killed < 60, b.log_tail()
        time.sleep(0.2)
    took = time.monotonic() - killed
    print(f"answering again {took:.1f}s after the only server was killed")
    assert took < 15


def test_demand_past_its_ttl_leaves_every_node_but_pinned_models_stay(mesh_bed, tmp_path: Path) -> None:
    env = {"MESH_GOSSIP_DEMAND_TTL": "4"}
    a = mesh_bed.start("A", "--model", other_model(tmp_path / "a"), env=env)
    b = mesh_bed.start("B", "--model", other_model(tmp_path / "b"), join=a, env=env)
    a.wait_ready(OTHER)
    b.wait_ready(OTHER)  # B's API answers (A may be ready before B's gateway listens)
    assert ask(b, "Ghost-Model") == 404  # unknown anywhere, yet asked for: counted
    mesh_bed.wait_until(lambda: all(demand_of(n, "Ghost-Model") for n in (a, b)), 10, "demand on every node")
    mesh_bed.wait_until(lambda: not any(demand_of(n, "Ghost-Model") for n in (a, b)), 15, "demand forgotten after its TTL")
    time.sleep(5)  # more than a TTL with no request for OTHER: pinned by live nodes, it stays
    for node in (a, b):
        pinned = demand_of(node, OTHER)
        assert pinned is not None and pinned["pinned"]


def test_a_burst_brings_a_standby_to_the_hot_model_and_steady_load_moves_nothing(mesh_bed, tmp_path: Path) -> None:
    a = mesh_bed.start("A", "--model", SMOLLM2)
    b = mesh_bed.start("B", "--model", other_model(tmp_path / "b"), join=a)
    c = mesh_bed.start("C", "--standby", join=a)
    a.wait_ready(SMOLLM2)
    b.wait_ready(OTHER)
    mesh_bed.wait_until(lambda: len(c.status()["peers"]) == 2, 30, "C in the mesh")
    # C learns of A's and B's ready servers over gossip (a probe interval or so after joining);
    # asking before that would count as demand on top of the steady load below.
    mesh_bed.wait_until(lambda: {SMOLLM2, OTHER} <= ready_in_view(c), 10, "C seeing both models ready")
    before = {n.name: n.status()["assignments"] for n in (a, b, c)}
    # Steady load, the same on both models, for 60 s: nothing may move.
    stop = time.monotonic() + 60
    while time.monotonic() < stop:
        assert ask(c, SMOLLM2) == 200 and ask(c, OTHER) == 200
        assert role_of(c) == "standby" and not c.llama_servers()
        time.sleep(2.5)
    assert {n.name: n.status()["assignments"] for n in (a, b, c)} == before
    steady = demand_of(c, SMOLLM2)["recent"]
    # A burst on SmolLM2 while Other-Model idles: over 3x the requests per server.
    threads = [threading.Thread(target=lambda: [ask(c, SMOLLM2) for _ in range(10)]) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The gateway reports its counts to gossip every interval: the burst's last requests reach the
    # view a moment after the burst ends (CI once read 65 of the 72 here).
    mesh_bed.wait_until(lambda: (demand_of(c, SMOLLM2) or {}).get("recent", 0) >= steady + 50, 10, "C counting the whole burst")
    hot = demand_of(c, SMOLLM2)
    assert hot["recent"] >= 3 * demand_of(c, OTHER)["recent"] > 0 and hot["recent"] > steady
    mesh_bed.wait_until(lambda: serves(c, states=("ready",)), 60, "the standby serving the hot model")
    (assignment,) = c.status()["assignments"]
    assert assignment["model_id"] == SMOLLM2 and assignment["promoted"] and "hot" in assignment["reason"]

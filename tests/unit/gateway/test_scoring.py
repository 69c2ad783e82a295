"""--auto's choice (discovery/scoring.py): the seed's rules one at a time, the region filter, and
the ranking a `discover --auto --dry-run` explains."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.gateway.discovery.listing import Listing
from services.gateway.discovery.scoring import Candidate, Preferences, Rule, Scored, candidate_of, in_region, rank, score

PLAIN = Candidate(
    mesh_id="mesh-plain",
    name="",
    region="",
    community=False,
    node_count=0,
    client_count=0,
    max_clients=0,
    served=frozenset(),
    wanted=frozenset(),
    nearby=False,
)
ANYWHERE = Preferences(region="", last_mesh_id="", held=frozenset())


@pytest.mark.parametrize(
    ("candidate", "preferences", "expected", "parts"),
    [
        pytest.param(PLAIN, ANYWHERE, 100, {Rule.BASE: 100}, id="base"),
        pytest.param(replace(PLAIN, community=True), ANYWHERE, 400, {Rule.BASE: 100, Rule.COMMUNITY: 300}, id="community"),
        pytest.param(PLAIN, replace(ANYWHERE, last_mesh_id="mesh-plain"), 600, {Rule.BASE: 100, Rule.LAST_JOINED: 500}, id="joined last time"),
        pytest.param(PLAIN, replace(ANYWHERE, last_mesh_id="mesh-other"), 100, {Rule.BASE: 100}, id="another mesh joined last time"),
        pytest.param(replace(PLAIN, mesh_id=""), ANYWHERE, 100, {Rule.BASE: 100}, id="no last mesh matches no id"),
        pytest.param(replace(PLAIN, client_count=4, max_clients=4), ANYWHERE, -900, {Rule.BASE: 100, Rule.FULL: -1000}, id="full"),
        pytest.param(replace(PLAIN, client_count=3, max_clients=4), ANYWHERE, 100, {Rule.BASE: 100}, id="one client short of full"),
        pytest.param(replace(PLAIN, client_count=900, max_clients=0), ANYWHERE, 100, {Rule.BASE: 100}, id="no client limit"),
        pytest.param(replace(PLAIN, node_count=1), ANYWHERE, 105, {Rule.BASE: 100, Rule.NODES: 5}, id="one node"),
        pytest.param(replace(PLAIN, node_count=10), ANYWHERE, 150, {Rule.BASE: 100, Rule.NODES: 50}, id="ten nodes"),
        pytest.param(replace(PLAIN, node_count=11), ANYWHERE, 150, {Rule.BASE: 100, Rule.NODES: 50}, id="nodes past ten count as ten"),
        pytest.param(replace(PLAIN, node_count=10_000), ANYWHERE, 150, {Rule.BASE: 100, Rule.NODES: 50}, id="a claimed horde counts as ten"),
        pytest.param(replace(PLAIN, served=frozenset({"a", "b", "c"})), ANYWHERE, 130, {Rule.BASE: 100, Rule.SERVED: 30}, id="served models"),
        pytest.param(
            replace(PLAIN, wanted=frozenset({"a", "b"})),
            replace(ANYWHERE, held=frozenset({"a", "z"})),
            115,
            {Rule.BASE: 100, Rule.WANTED: 15},
            id="a wanted model held",
        ),
        pytest.param(
            replace(PLAIN, wanted=frozenset({"a", "b"})),
            replace(ANYWHERE, held=frozenset({"a", "b"})),
            130,
            {Rule.BASE: 100, Rule.WANTED: 30},
            id="two wanted models held",
        ),
        pytest.param(replace(PLAIN, wanted=frozenset({"a", "b"})), ANYWHERE, 100, {Rule.BASE: 100}, id="wanted models this node lacks (or a client)"),
        pytest.param(
            replace(PLAIN, community=True, node_count=3, served=frozenset({"a"}), wanted=frozenset({"b"}), client_count=5, max_clients=5),
            replace(ANYWHERE, last_mesh_id="mesh-plain", held=frozenset({"b"})),
            100 + 300 + 500 - 1000 + 15 + 10 + 15,
            {Rule.BASE: 100, Rule.COMMUNITY: 300, Rule.LAST_JOINED: 500, Rule.FULL: -1000, Rule.NODES: 15, Rule.SERVED: 10, Rule.WANTED: 15},
            id="every rule",
        ),
    ],
)
def test_the_seed_rules(candidate: Candidate, preferences: Preferences, expected: int, parts: dict[Rule, int]) -> None:
    scored = score(candidate, preferences)
    assert scored.score == expected
    assert dict(scored.parts) == parts
    assert sum(points for _, points in scored.parts) == scored.score


@pytest.mark.parametrize(
    ("region", "nearby", "asked", "kept"),
    [
        ("eu-west", False, "eu-west", True),
        (" EU-West", False, "eu-west", True),
        ("us-east", False, "eu-west", False),
        ("", False, "eu-west", False),  # a directory mesh of unknown region may be anywhere
        ("us-east", True, "eu-west", True),  # seen on the LAN: nearby whatever it says
        ("", True, "eu-west", True),
        ("us-east", False, "", True),  # no --region: everything
        ("", False, "  ", True),
    ],
)
def test_region_filter(region: str, nearby: bool, asked: str, kept: bool) -> None:
    candidate = replace(PLAIN, region=region, nearby=nearby)
    assert in_region(candidate, asked) is kept
    assert [each.candidate for each in rank([candidate], replace(ANYWHERE, region=asked))] == ([candidate] if kept else [])


def test_rank_puts_the_best_first_and_breaks_ties_by_mesh_id() -> None:
    big = replace(PLAIN, mesh_id="mesh-big", node_count=8)
    tie_b = replace(PLAIN, mesh_id="mesh-b", node_count=2)
    tie_a = replace(PLAIN, mesh_id="mesh-a", served=frozenset({"m"}))
    full = replace(PLAIN, mesh_id="mesh-full", community=True, client_count=1, max_clients=1)
    ranked = rank([tie_b, full, big, tie_a], ANYWHERE)
    assert [each.candidate.mesh_id for each in ranked] == ["mesh-big", "mesh-a", "mesh-b", "mesh-full"]
    assert [each.viable for each in ranked] == [True, True, True, False]


def test_the_same_mesh_seen_nearby_ranks_before_its_listing() -> None:
    listed, seen = PLAIN, replace(PLAIN, nearby=True)
    assert [each.candidate for each in rank([listed, seen], ANYWHERE)] == [seen, listed]


def test_the_last_mesh_outranks_a_bigger_community_mesh() -> None:
    last = replace(PLAIN, mesh_id="mesh-last", node_count=1)
    community = replace(PLAIN, mesh_id="mesh-community", community=True, node_count=10, served=frozenset({"a", "b"}))
    ranked = rank([community, last], replace(ANYWHERE, last_mesh_id="mesh-last"))
    assert [each.candidate.mesh_id for each in ranked] == ["mesh-last", "mesh-community"]


def test_nothing_found_ranks_nothing() -> None:
    assert rank([], ANYWHERE) == ()


def test_a_listing_becomes_a_candidate_that_is_not_nearby() -> None:
    listing = Listing(
        mesh_id="7f3a9c01d2e4b5a6",
        name="garage",
        region="eu-west",
        served=("a", "b"),
        wanted=("c",),
        memory_bytes=1,
        node_count=3,
        client_count=2,
        max_clients=2,
        version="0.1.0",
        join_token="pub1-token",
        community=True,
        publisher="ab" * 32,
        created_at=1,
        expires_at=2,
    )
    candidate = candidate_of(listing)
    assert candidate == Candidate(
        mesh_id="7f3a9c01d2e4b5a6",
        name="garage",
        region="eu-west",
        community=True,
        node_count=3,
        client_count=2,
        max_clients=2,
        served=frozenset({"a", "b"}),
        wanted=frozenset({"c"}),
        nearby=False,
    )
    assert candidate.full and score(candidate, ANYWHERE) == Scored(
        candidate, 100 + 300 - 1000 + 15 + 20, ((Rule.BASE, 100), (Rule.COMMUNITY, 300), (Rule.FULL, -1000), (Rule.NODES, 15), (Rule.SERVED, 20))
    )

"""`mesh-llm discover`'s tables: one row per LAN mesh (its nodes, models and how many more, memory,
RTT), one per public mesh (its listing), and what was ignored or did not answer."""

from __future__ import annotations

from collections import Counter

from services.cli.discover import directory_report, report
from services.gateway.discovery.announcement import Announcement, LanMesh, LanNode, LanScan
from services.gateway.discovery.listing import Listing, Reading, Rejection
from services.gateway.discovery.nostr import Directory


def node(name: str, models: tuple[str, ...], total: int, rtt: float | None) -> LanNode:
    return LanNode(Announcement("m1", "home", f"id-{name}", name, models, total, 7000, 4 * 10**9, "0.1.0"), rtt)


def test_a_row_per_mesh() -> None:
    a, b = node("a", ("Qwen3-8B",), 3, 0.0012), node("b", (), 0, None)
    scan = LanScan((LanMesh("m1", "home", (a, b), ("Qwen3-8B",), 3, 8 * 10**9, 0.0012), LanMesh("m2", "", (b,), (), 0, 0, None)))
    lines = report(scan).splitlines()
    assert lines[0].split() == ["mesh", "name", "nodes", "models", "memory", "RTT"]
    assert lines[1].split() == ["m1", "home", "a,", "b", "Qwen3-8B", "(+2", "more)", "8.0", "GB", "1.2", "ms"]
    assert lines[2].split() == ["m2", "-", "b", "-", "0.0", "GB", "no", "answer"]


def test_nothing_found_says_so_and_counts_what_was_ignored() -> None:
    assert report(LanScan(())) == "no meshes found on the LAN"
    ignored = report(LanScan((), ignored=2, reasons=("port 0", "port 0")))
    assert ignored.splitlines()[1] == "ignored 2 announcements that did not read right: port 0"


def public(mesh_id: str, name: str, clients: int, max_clients: int) -> Listing:
    return Listing(mesh_id, name, "eu", ("Qwen3-8B",), ("GLM-4",), 24 * 10**9, 3, clients, max_clients, "0.1.0", "", False, "ab" * 32, 1, 121)


RELAYS = ("wss://one.example", "wss://two.example")


def test_public_meshes_beside_what_was_ignored_and_who_did_not_answer() -> None:
    reading = Reading((public("m9", "garage", 1, 4), public("m7", "", 0, 0)), Counter({Rejection.EXPIRED: 2, Rejection.UNSIGNED: 1}))
    lines = directory_report(Directory(reading, RELAYS, RELAYS[:1])).splitlines()
    assert lines[0] == "public meshes (1 of 2 relays answered):"
    assert lines[1].split() == ["mesh", "name", "region", "nodes", "clients", "models", "wanted", "memory", "version"]
    assert lines[2].split() == ["m9", "garage", "eu", "3", "1/4", "Qwen3-8B", "GLM-4", "24.0", "GB", "0.1.0"]
    assert lines[3].split()[:2] == ["m7", "-"]
    assert lines[4] == "ignored 3 listings: 2 expired, 1 unsigned"
    assert lines[5] == "no answer from wss://two.example"


def test_no_public_meshes_says_whether_any_relay_answered() -> None:
    assert directory_report(Directory(Reading((), Counter()), RELAYS, ())) == "public directory: no relay answered (wss://one.example, wss://two.example)"
    assert directory_report(Directory(Reading((), Counter({Rejection.FULL: 1})), RELAYS[:1], RELAYS[:1])).splitlines() == [
        "no public meshes on wss://one.example",
        "ignored 1 listing: 1 full",
    ]

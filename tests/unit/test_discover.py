"""`mesh-llm discover`'s table: one row per mesh, its nodes, models (and how many more), memory, RTT."""

from __future__ import annotations

from services.cli.discover import report
from services.gateway.discovery.announcement import Announcement, LanMesh, LanNode, LanScan


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

"""--join-nearby's choice: the mesh named (id, id prefix of 4+, name) or the only one heard; none or
several is one line naming what was heard; the nearest nodes are asked first."""

from __future__ import annotations

import re

import pytest

from services.cli.flags import UsageError
from services.cli.nearby import ANY, addresses_of, chosen
from services.gateway.discovery.announcement import Announcement, LanMesh, LanNode


def node(node_id: str, address: str, rtt: float | None) -> LanNode:
    return (
        LanNode(Announcement("m", "", node_id, node_id, (), 0, 7447, 0, "1"), rtt)
        if not address
        else LanNode(Announcement("m", "", node_id, node_id, (), 0, 7447, 0, "1", (address,)), rtt)
    )


HOME, LAB = LanMesh("aaaa1111", "home", ()), LanMesh("bbbb2222", "lab", ())


@pytest.mark.parametrize(
    ("meshes", "wanted", "picked"),
    [((HOME,), ANY, HOME), ((HOME, LAB), "lab", LAB), ((HOME, LAB), "bbbb2222", LAB), ((HOME, LAB), "aaaa", HOME)],
)
def test_the_named_or_only_mesh_is_chosen(meshes: tuple[LanMesh, ...], wanted: str, picked: LanMesh) -> None:
    assert chosen(meshes, wanted) == picked


@pytest.mark.parametrize(
    ("meshes", "wanted", "message"),
    [((), ANY, "no mesh found on the LAN (heard: none)"), ((HOME, LAB), ANY, "several meshes"), ((HOME,), "office", "no mesh 'office' found")],
)
def test_none_or_several_is_one_line(meshes: tuple[LanMesh, ...], wanted: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        chosen(meshes, wanted)


def test_the_nearest_answering_nodes_are_asked_first() -> None:
    mesh = LanMesh("m", "", (node("far", "10.0.0.3", 0.02), node("silent", "10.0.0.4", None), node("near", "fe80::1", 0.001)))
    assert addresses_of(mesh) == ["[fe80::1]:7447", "10.0.0.3:7447", "10.0.0.4:7447"]

"""A mesh's publicity (services/common/publicity.py): a member's flags make it the origin, members
given none copy the mesh's and keep it after the origin is gone (so the listing survives it), a
copy of an origin that came back without those flags is dropped, and every view elects the same
one publisher."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.common.publicity import adopted, from_flags, publisher
from services.common.records import MeshView, NodeRecord, Peer, PeerStatus, Publicity, Role

UNSET = Publicity()
LISTED_BY_A = Publicity(mesh_name="garage", region="eu", max_clients=4, publish=True, origin="a")
NAMED_BY_C = Publicity(mesh_name="lab", origin="c")
LISTED_BY_D = Publicity(mesh_name="attic", publish=True, origin="d")


def record(node_id: str, publicity: Publicity = UNSET, role: Role = Role.SERVING) -> NodeRecord:
    return NodeRecord(node_id=node_id, name=node_id, role=role, publicity=publicity)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        pytest.param(("", "", 0, False), Publicity(), id="no flags: no origin, the mesh's settings will be copied"),
        pytest.param(("garage", "", 0, False), Publicity(mesh_name="garage", origin="a"), id="--mesh-name alone names, does not publish"),
        pytest.param(("", "eu", 4, True), Publicity(region="eu", max_clients=4, publish=True, origin="a"), id="--publish --region --max-clients"),
    ],
)
def test_flags_make_the_node_the_origin(flags: tuple[str, str, int, bool], expected: Publicity) -> None:
    assert from_flags("a", *flags) == expected


@pytest.mark.parametrize(
    ("own", "others", "expected"),
    [
        pytest.param(record("b"), [record("a", LISTED_BY_A)], LISTED_BY_A, id="a member without flags copies the origin's"),
        pytest.param(record("b", LISTED_BY_A), [], LISTED_BY_A, id="kept after the origin left: the mesh stays listed"),
        pytest.param(record("b", LISTED_BY_A), [record("c")], LISTED_BY_A, id="kept beside members without it"),
        pytest.param(record("c"), [record("b", LISTED_BY_A)], LISTED_BY_A, id="copied from a copy, its origin gone"),
        pytest.param(record("b", LISTED_BY_A), [record("a")], Publicity(), id="dropped: its origin is back without --publish"),
        pytest.param(
            record("b", LISTED_BY_A), [record("a", replace(LISTED_BY_A, region="us"))], replace(LISTED_BY_A, region="us"), id="its origin's new settings win"
        ),
        pytest.param(record("c", NAMED_BY_C), [record("a", LISTED_BY_A)], NAMED_BY_C, id="a member with flags keeps its own"),
        pytest.param(record("b"), [record("c", NAMED_BY_C), record("d", LISTED_BY_D)], LISTED_BY_D, id="a listed mesh's settings before a named one's"),
        pytest.param(record("b"), [record("d", LISTED_BY_D), record("a", LISTED_BY_A)], LISTED_BY_A, id="two listed: the lowest origin's"),
        pytest.param(record("a"), [record("b", LISTED_BY_A)], Publicity(), id="its own old settings are not copied back from the mesh"),
        pytest.param(record("b"), [record("c")], Publicity(), id="nothing to copy"),
    ],
)
def test_which_copy_a_member_holds(own: NodeRecord, others: list[NodeRecord], expected: Publicity) -> None:
    assert adopted(own, others) == expected


def test_copies_settle_the_same_whatever_order_members_copy_in() -> None:
    """Members keep copying from each other until nothing changes: all then hold one copy, whoever started."""
    origin_gone = [record("b", LISTED_BY_A), record("c", replace(LISTED_BY_A, region="us")), record("e")]
    for order in (["b", "c", "e"], ["e", "c", "b"], ["c", "e", "b"]):
        members = {member.node_id: member for member in origin_gone}
        for _ in range(3):
            for node_id in order:
                others = [m for m in members.values() if m.node_id != node_id]
                members[node_id] = replace(members[node_id], publicity=adopted(members[node_id], others))
        assert len({member.publicity for member in members.values()}) == 1, order


def view(own: NodeRecord, *peers: NodeRecord) -> MeshView:
    return MeshView(own=own, peers=tuple(Peer(peer, "127.0.0.1:1", PeerStatus.ALIVE) for peer in peers), mesh_id="m1")


@pytest.mark.parametrize(
    ("mesh", "expected"),
    [
        pytest.param(view(record("a"), record("b")), "", id="not listed: nobody publishes"),
        pytest.param(view(record("b", NAMED_BY_C)), "", id="named, not listed"),
        pytest.param(
            view(record("z", replace(LISTED_BY_A, origin="z")), record("b", replace(LISTED_BY_A, origin="z"))), "z", id="the live origin, whatever its id"
        ),
        pytest.param(view(record("c", LISTED_BY_A), record("b", LISTED_BY_A), record("d")), "b", id="origin gone: the lowest id holding the listing"),
        pytest.param(view(record("a", LISTED_BY_A), record("d", LISTED_BY_D)), "a", id="two origins: the lowest"),
        pytest.param(view(record("b", LISTED_BY_A), record("a", LISTED_BY_A, Role.CLIENT)), "a", id="a client origin publishes too"),
    ],
)
def test_one_publisher_per_mesh(mesh: MeshView, expected: str) -> None:
    assert publisher(mesh) == expected


def test_every_member_elects_the_same_publisher() -> None:
    members = [record("c", LISTED_BY_A), record("b", LISTED_BY_A), record("e"), record("d", LISTED_BY_D)]
    views = [view(member, *(other for other in members if other is not member)) for member in members]
    assert {publisher(v) for v in views} == {"d"}

"""The LAN announcement: what a node's view becomes in TXT (small, nothing secret), what a received
TXT record must look like to be believed, and the meshes a set of announcements describes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.records import MeshView, NodeRecord, ProcessKind, ProcessState, ServedModel
from services.gateway.discovery.announcement import (
    INSTANCE_NAME_BYTES,
    MODELS_BYTES,
    NAME_BYTES,
    Announcement,
    BadAnnouncement,
    LanNode,
    NotAnnounced,
    announcement_of,
    instance_name,
    meshes_of,
    parse,
    properties,
)

SECRET = bytes(range(32))
NODE_ID, MESH_ID = "0123456789abcdef", "fedcba9876543210"


def served(model_id: str, state: ProcessState = ProcessState.READY, kind: ProcessKind = ProcessKind.LLAMA_SERVER) -> ServedModel:
    return ServedModel(model_id, f"/models/{model_id}.gguf", state, port=8080, kind=kind)


def view(*models: ServedModel, name: str = "node-a", node_id: str = NODE_ID, memory: int = 8 * 10**9) -> MeshView:
    own = NodeRecord(node_id=node_id, name=name, memory_offered_bytes=memory, served=models)
    return MeshView(own=own, mesh_id=MESH_ID, secret=SECRET, secret_version=1, address="10.0.0.5:7000")


def txt(announcement: Announcement) -> dict[bytes, bytes | None]:
    """The properties as a browser reads them off the wire."""
    return {key.encode(): value.encode() for key, value in properties(announcement).items()}


A = announcement_of(view(served("Qwen3-8B")), ["10.0.0.5:7000"], "0.1.0")
assert isinstance(A, Announcement)


@pytest.mark.parametrize(
    ("mesh", "advertised", "expected"),
    [
        (MeshView(own=NodeRecord("", "")), ["10.0.0.5:7000"], None),  # gossip has not answered yet
        (view(), ["127.0.0.2:7000"], NotAnnounced),  # a test mesh on loopback: no one else can dial it
        (view(), ["node.example:7000"], NotAnnounced),  # an A record needs an address
        (view(), ["0.0.0.0:7000"], NotAnnounced),
        (view(), [], NotAnnounced),
    ],
)
def test_nothing_reachable_is_not_announced(mesh: MeshView, advertised: list[str], expected: type | None) -> None:
    found = announcement_of(mesh, advertised, "0.1.0")
    assert found is None if expected is None else isinstance(found, expected)


def test_the_announcement_names_the_models_answered_and_the_addresses_dialled() -> None:
    models = (
        served("b-model"),
        served("a-model", ProcessState.STARTING),
        served("failed", ProcessState.FAILED),
        served("worker", kind=ProcessKind.RPC_SERVER),  # a split's worker answers nothing itself
    )
    found = announcement_of(view(*models), ["10.0.0.5:7000", "127.0.0.1:7000", "[fd00::5]:7000", "192.168.1.5:9000", "lan.example:7000"], "0.1.0")
    assert found == Announcement(MESH_ID, "", NODE_ID, "node-a", ("a-model", "b-model"), 2, 7000, 8 * 10**9, "0.1.0", ("10.0.0.5", "fd00::5"))


def test_many_models_are_cut_to_fit_and_counted() -> None:
    many = tuple(served(f"model-{index:03d}-{'x' * 20}") for index in range(50))
    found = announcement_of(view(*many), ["10.0.0.5:7000"], "0.1.0")
    assert isinstance(found, Announcement)
    assert found.models_total == 50 and 0 < len(found.models) < 50
    assert len(properties(found)["models"].encode()) <= MODELS_BYTES
    assert parse(txt(found), found.addresses) == found


def test_a_long_name_is_cut_on_a_character_boundary() -> None:
    found = announcement_of(view(name="ü" * 100 + "\x1b[31m"), ["10.0.0.5:7000"], "0.1.0")
    assert isinstance(found, Announcement)
    assert len(found.node_name.encode()) <= NAME_BYTES and set(found.node_name) == {"ü"}


@given(
    name=st.text(max_size=300),
    models=st.lists(st.text(min_size=1, max_size=120), max_size=40),
    memory=st.integers(min_value=0, max_value=2**70),
)
def test_every_announcement_reads_back_fits_txt_and_holds_no_secret(name: str, models: list[str], memory: int) -> None:
    found = announcement_of(view(*(served(model) for model in models), name=name, memory=memory), ["10.0.0.5:7000"], "0.1.0")
    assert isinstance(found, Announcement)
    fields = properties(found)
    assert all(len(key.encode()) + 1 + len(value.encode()) <= 255 for key, value in fields.items())
    for encoded in (SECRET.hex(), SECRET.hex().upper()):
        assert all(encoded not in value for value in fields.values())
    assert parse(txt(found), found.addresses) == found
    assert len(instance_name(found).encode()) <= INSTANCE_NAME_BYTES and NODE_ID in instance_name(found)


@pytest.mark.parametrize(
    ("name", "instance"),
    [
        ("node-a", f"node-a-{NODE_ID}"),
        ("my laptop.local", f"my-laptop-local-{NODE_ID}"),
        ("", NODE_ID),
        ("...", NODE_ID),
        ("x" * 80, f"{'x' * (INSTANCE_NAME_BYTES - len(NODE_ID) - 1)}-{NODE_ID}"),
    ],
)
def test_instance_names_are_one_dns_label_with_the_node_id(name: str, instance: str) -> None:
    found = announcement_of(view(name=name), ["10.0.0.5:7000"], "")
    assert isinstance(found, Announcement) and instance_name(found) == instance


def changed(key: str, value: bytes | None) -> dict[bytes, bytes | None]:
    return txt(A) | {key.encode(): value}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({k: v for k, v in txt(A).items() if k != b"mesh_id"}, "no mesh_id"),
        (changed("txtvers", b"2"), "unknown txtvers"),
        (changed("mesh_id", b"../../etc"), "mesh_id is not an identifier"),
        (changed("node_id", b""), "node_id is not an identifier"),
        (changed("node_id", None), "no node_id"),  # a key without a value
        (changed("node_name", b"x" * (NAME_BYTES + 1)), "node_name longer than"),
        (changed("node_name", b"\xff\xfe"), "not UTF-8"),
        (changed("node_name", b"evil\x1b]0;pwned\x07"), "unprintable"),
        (changed("models", b"a,,b"), "an empty model name"),
        (changed("models", b"m" * (MODELS_BYTES + 1)), "models longer than"),
        (changed("models_total", b"0"), "models_total below"),
        (changed("models_total", b"99999999"), "models_total is not a number"),
        (changed("port", b"0"), "port 0"),
        (changed("port", b"65536"), "port is not a number"),
        (changed("port", b"-1"), "port is not a number"),
        (changed("port", "٧٠٠٠".encode()), "port is not a number"),  # digits, but not ASCII ones
        (changed("memory", b"1e9"), "memory is not a number"),
        (changed("memory", str(2**61).encode()), "memory is not a number"),
        (changed("padding", b"p" * 1300), "TXT record too large"),
    ],
)
def test_a_bad_record_is_not_believed(record: dict[bytes, bytes | None], reason: str) -> None:
    with pytest.raises(BadAnnouncement, match=reason):
        parse(record)


def test_unknown_keys_are_ignored() -> None:
    assert parse(changed("future", b"yes"), A.addresses) == A


def node(node_id: str, mesh_id: str = MESH_ID, rtt: float | None = None, mesh_name: str = "", models: tuple[str, ...] = (), memory: int = 1) -> LanNode:
    return LanNode(Announcement(mesh_id, mesh_name, node_id, f"name-{node_id}", models, len(models), 7000, memory, "0.1.0"), rtt)


def test_nodes_are_grouped_into_meshes_nearest_first() -> None:
    meshes = meshes_of(
        [
            node("b", rtt=0.004, mesh_name="home", models=("m2", "m1"), memory=5),
            node("a", rtt=None, mesh_name="home", models=("m1",), memory=3),
            node("c", rtt=0.010, mesh_name="old-name"),
            node("a", rtt=None, mesh_name="home", models=("m1",), memory=3),  # heard twice
            node("x", mesh_id="far", rtt=None),
            node("y", mesh_id="near", rtt=0.001),
        ]
    )
    assert [mesh.mesh_id for mesh in meshes] == ["near", MESH_ID, "far"]
    home = meshes[1]
    assert [n.announcement.node_id for n in home.nodes] == ["a", "b", "c"]
    assert home.mesh_name == "home" and home.models == ("m1", "m2") and home.models_total == 2
    assert home.memory_bytes == 9 and home.rtt == 0.004
    assert meshes[2].rtt is None

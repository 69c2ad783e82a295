"""The console's /api/status shows each node's GPUs (this node's and its peers'), as their records
carry them: the card, its memory and what was in use; a node with none runs models from RAM."""

from __future__ import annotations

from fastapi.testclient import TestClient

from services.common.records import Device, MeshView, NodeRecord, Peer, PeerStatus
from services.gateway.app import create_console_app
from services.gateway.mirror import MeshMirror
from services.gateway.settings import GatewaySettings

MIB = 1024**2
H200 = Device("CUDA0", "NVIDIA H200", 143156 * MIB, 142517 * MIB)
M2 = Device("MTL0", "Apple M2 Pro", 21845 * MIB, 21845 * MIB)


def status(own: NodeRecord, *peers: NodeRecord) -> dict:
    mirror = MeshMirror()
    mirror.view = MeshView(own=own, peers=tuple(Peer(record, "10.0.0.3:7447", PeerStatus.ALIVE) for record in peers), mesh_id="m1")
    client = TestClient(create_console_app(GatewaySettings(), mirror, "fp"), client=("127.0.0.1", 50000), base_url="http://127.0.0.1:3131")
    return client.get("/api/status").json()


def test_each_node_shows_its_gpus_with_their_memory_and_use() -> None:
    answer = status(NodeRecord("n1", "gpu-box", devices=(H200,)), NodeRecord("n2", "mac", devices=(M2,)), NodeRecord("n3", "cpu-box"))
    h200 = {"name": "CUDA0", "description": "NVIDIA H200", "total_bytes": 143156 * MIB, "free_bytes": 142517 * MIB, "used_bytes": 639 * MIB}
    assert answer["devices"] == [h200] and answer["node"]["devices"] == [h200]
    mac, cpu = answer["peers"][0], answer["peers"][1]
    assert [(d["description"], d["total_bytes"], d["used_bytes"]) for d in mac["devices"]] == [("Apple M2 Pro", 21845 * MIB, 0)]
    assert cpu["devices"] == []  # no GPU: the console shows "CPU"

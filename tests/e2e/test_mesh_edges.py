"""The mesh's edges: misbehaving peers, unreachable tokens, admin calls, leave, and metrics."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time

import httpx
import pytest
from aioquic.asyncio.client import connect
from aioquic.quic.configuration import QuicConfiguration
from prometheus_client.parser import text_string_to_metric_families

from services.common.invite import InviteToken, decode
from services.gateway.peers.endpoint import ALPN
from services.gateway.peers.framing import MAX_FRAME_BYTES, StreamKind, encode_frame
from tests.nodes import MESH_LLM, free_port

pytestmark = pytest.mark.e2e


async def misbehave(port: int, first_bytes: bytes) -> str:
    """Connect to a node's QUIC port as a stranger, send `first_bytes` on a stream; the close reason."""
    configuration = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE, server_name="x")
    closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    async with connect("127.0.0.1", port, configuration=configuration) as client:
        original = client.quic_event_received

        def watch(event) -> None:
            if type(event).__name__ == "ConnectionTerminated" and not closed.done():
                closed.set_result(event.reason_phrase)
            original(event)

        client.quic_event_received = watch
        _, writer = await client.create_stream()
        writer.write(first_bytes)
        return await asyncio.wait_for(closed, 10)


@pytest.mark.parametrize(
    ("first_bytes", "reason"),
    [
        (bytes([StreamKind.GOSSIP]) + encode_frame(b"hello"), "GOSSIP stream before admission"),
        (bytes([StreamKind.ADMISSION]) + (MAX_FRAME_BYTES + 1).to_bytes(4, "big"), "malformed stream"),
        (bytes([StreamKind.ADMISSION]) + encode_frame(b"\xff\xfe garbage"), "malformed stream"),
        (b"\x77", "malformed stream"),
    ],
)
def test_misbehaving_peer_is_disconnected_and_the_node_keeps_serving(start_node, first_bytes: bytes, reason: str) -> None:
    node = start_node()
    deadline = time.monotonic() + 60
    address = ""
    while time.monotonic() < deadline and not address:
        node.check_alive()
        address = _address(node)
        time.sleep(0.1)
    port = int(address.rpartition(":")[2])
    assert reason in asyncio.run(misbehave(port, first_bytes))
    assert "peer refused" in node.log_path.read_text()
    node.check_alive()
    assert node.status()["id"]


def _address(node) -> str:
    try:
        return node.status()["address"]
    except Exception:  # noqa: BLE001 - not up yet
        return ""


def test_token_for_an_unreachable_address_fails_after_the_join_timeout(tmp_path) -> None:
    silent = f"127.0.0.1:{free_port(kind=__import__('socket').SOCK_DGRAM)}"
    token = InviteToken("0123456789abcdef", b"\1" * 32, (silent,), "ab" * 32).encode()
    started = time.monotonic()
    result = subprocess.run(
        [
            str(MESH_LLM),
            "--join",
            token,
            "--join-timeout",
            "2",
            "--profile",
            "test",
            "--home",
            str(tmp_path / "h"),
            "--port",
            str(free_port()),
            "--console",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "could not join the mesh" in result.stderr and silent in result.stderr
    assert time.monotonic() - started < 30


def test_admin_leave_metrics_and_console(mesh_bed) -> None:
    a = mesh_bed.start("A")
    b = mesh_bed.start("B", join=a)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(["A", "B"]), 30, "joined")

    peers = subprocess.run([str(MESH_LLM), "admin", "peers", "--home", str(a.home)], capture_output=True, text=True, timeout=30)
    assert peers.returncode == 0 and " B " in peers.stdout and "alive" in peers.stdout
    me = subprocess.run([str(MESH_LLM), "admin", "self", "--home", str(a.home)], capture_output=True, text=True, timeout=30)
    assert me.returncode == 0 and " A " in me.stdout

    status = a.status()
    assert decode(status["token"]).mesh_id == status["mesh_id"] and status["peers"][0]["address"]
    metrics = {}
    for family in text_string_to_metric_families(httpx.get(f"{b.api}/metrics").text):
        for sample in family.samples:
            metrics[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert metrics[("mesh_gossip_peers", (("state", "alive"),))] == 1
    assert metrics[("mesh_gossip_rounds_total", ())] > 0
    assert metrics[("mesh_peer_bytes_total", (("direction", "sent"), ("stream", "gossip")))] > 0
    assert metrics[("mesh_peer_bytes_total", (("direction", "received"), ("stream", "gossip")))] > 0

    # Graceful leave on Ctrl-C: A drops B at once ("left"), without suspecting it first.
    assert b.interrupt() == 0
    mesh_bed.wait_until(lambda: "B" not in mesh_bed.peers_seen_by("A"), 5, "B gone")
    log = a.log_path.read_text()
    assert "member left" in log and "member suspected" not in log

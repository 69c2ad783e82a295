"""Meshes of real nodes on 127.0.0.x, with our UDP relay between them (test gossip profile)."""

from __future__ import annotations

import subprocess
import time

import pytest

from services.common.invite import InviteToken, decode, new_secret
from services.gossip.settings import TEST
from tests.conftest import SMOLLM2
from tests.nodes import MESH_LLM, is_loopback
from tests.relay import LinkRule

pytestmark = pytest.mark.e2e
ABC = ["A", "B", "C"]


def three_nodes(bed):
    a = bed.start("A", "--model", SMOLLM2)
    bed.start("B", join=a)
    bed.start("C", "--client", join=a)
    return a


def test_three_nodes_form_a_mesh_within_five_seconds(mesh_bed) -> None:
    three_nodes(mesh_bed)
    # From the moment every node's console answers (the processes are up) to full agreement.
    mesh_bed.wait_until(lambda: all(_answers(mesh_bed, n) for n in ABC), 60, "up")
    took = mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(ABC), 5.0, "converged")
    statuses = {name: mesh_bed.nodes[name].status() for name in ABC}
    assert statuses["C"]["role"] == "client" and statuses["C"]["memory_offered_bytes"] == 0
    assert {p["name"]: p["role"] for p in statuses["A"]["peers"]}["C"] == "client"
    assert len({s["mesh_id"] for s in statuses.values()}) == 1
    mesh_bed.wait_until(
        lambda: {p["name"]: p["models_on_disk"] for p in mesh_bed.nodes["B"].status()["peers"]}["A"] == [SMOLLM2], 30, "A's models on disk known to B"
    )
    # Every node measures its RTT to every peer as it probes them in turn.
    mesh_bed.wait_until(lambda: all(p["rtt_ms"] > 0 for n in ABC for p in mesh_bed.nodes[n].status()["peers"]), 10, "RTTs measured")
    print(f"converged {took:.2f}s after all nodes were up")
    mesh_bed.nodes["A"].wait_ready(SMOLLM2)
    for name in ABC:
        listeners, udp = mesh_bed.nodes[name].sockets()
        assert listeners and all(is_loopback(ip) for ip, _ in listeners), listeners
        quic_port = int(mesh_bed.nodes[name].argv[mesh_bed.nodes[name].argv.index("--bind-port") + 1])
        assert [port for _, port in udp] == [quic_port], udp


def _answers(bed, name: str) -> bool:
    try:
        return bool(bed.nodes[name].status()["id"])
    except Exception:  # noqa: BLE001 - not up yet
        return False


def test_forged_token_is_refused_and_rotate_key_takes_effect(mesh_bed) -> None:
    a = mesh_bed.start("A")
    b = mesh_bed.start("B", join=a)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(["A", "B"]), 30, "joined")
    real = decode(a.token())
    forged = InviteToken(real.mesh_id, new_secret(), real.bootstrap, real.fingerprint).encode()

    stranger = mesh_bed.start("S", "--join-timeout", "3", token=forged)
    assert stranger.process.wait(60) == 2
    assert "could not join the mesh" in stranger.log_path.read_text() and "not issued by this mesh" in stranger.log_path.read_text()
    assert "peer refused" in a.log_path.read_text() and "not issued by this mesh" in a.log_path.read_text()
    assert "S" not in mesh_bed.peers_seen_by("A")

    rotated = subprocess.run([str(MESH_LLM), "rotate-key", "--home", str(a.home)], capture_output=True, text=True, timeout=30)
    assert rotated.returncode == 0, rotated.stderr
    new_token = rotated.stdout.split("invite token: ")[1].strip()
    assert decode(new_token).secret != real.secret

    late = mesh_bed.start("L", "--join-timeout", "3", token=a.token())  # the old token
    assert late.process.wait(60) == 2 and "not issued by this mesh" in late.log_path.read_text()

    mesh_bed.start("N", token=new_token)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(["A", "B", "N"]), 30, "admitted with the new token")
    # B learned the new secret over gossip: a node joining through B with the new token gets in.
    via_b = InviteToken(real.mesh_id, decode(new_token).secret, decode(b.token()).bootstrap, real.fingerprint).encode()
    mesh_bed.start("V", token=via_b)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(["A", "B", "N", "V"]), 30, "admitted through B")


def test_killed_node_is_declared_dead_then_rejoins_as_one_entry(mesh_bed) -> None:
    three_nodes(mesh_bed)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(ABC), 60, "converged")
    b = mesh_bed.nodes["B"]
    b_id = b.status()["id"]
    b.kill()
    killed = time.monotonic()
    mesh_bed.wait_until(lambda: "B" not in mesh_bed.peers_seen_by("A") and "B" not in mesh_bed.peers_seen_by("C"), 30, "B gone")
    took = time.monotonic() - killed
    assert took <= TEST.dead_within, f"B disappeared after {took:.2f}s, bound {TEST.dead_within}s"
    time.sleep(1.0)
    assert "B" not in mesh_bed.peers_seen_by("A") and "B" not in mesh_bed.peers_seen_by("C")

    b.start()  # same home, same node id, same flags
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(ABC), 30, "B back")
    for name in ("A", "C"):
        ids = [p["id"] for p in mesh_bed.nodes[name].status()["peers"]]
        assert ids.count(b_id) == 1 and len(ids) == 2


def test_converges_with_loss_and_heals_after_a_partition(mesh_bed) -> None:
    mesh_bed.relay.set_default(LinkRule(loss=0.2))
    a = mesh_bed.start("A")
    mesh_bed.start("B", join=a)
    mesh_bed.start("C", join=a)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(ABC), 60, "converged with 20% loss")

    mesh_bed.relay.set_default(LinkRule())
    ips = {name: mesh_bed.ip_of(name) for name in ABC}
    mesh_bed.relay.partition({ips["A"]}, {ips["B"], ips["C"]})
    mesh_bed.wait_until(lambda: "A" not in mesh_bed.peers_seen_by("B") and set(mesh_bed.peers_seen_by("A")) == set(), 30, "partitioned")
    time.sleep(10 - TEST.dead_within)
    mesh_bed.relay.heal()
    healed = time.monotonic()
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(ABC), 5.0, "agreeing after the heal")
    print(f"agreed {time.monotonic() - healed:.2f}s after the partition healed")

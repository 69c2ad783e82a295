"""Pairing between two machines (network namespaces joined by a veth pair, tests/netns.py): members
A (serving SmolLM2) and B run in the first; in the second, `mesh-llm --client --join-nearby` finds
the mesh over mDNS and shows a code; both members list the request with that code
(`mesh-llm admin pending`); the test approves it on A; the new node joins with its own credential
and answers a chat through the mesh. A node with a forged token for the same mesh is refused. Started again with no
flag, the paired node rejoins through the members it was given. After
`mesh-llm admin revoke`, the paired node leaves both members' peer lists and its requests stop
being answered. The whole run on the second machine's LAN interface is captured: the mesh secret
appears in it in no form.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from services.common import mesh_identity
from services.common.invite import InviteToken, decode, new_secret
from tests.capture import captured
from tests.conftest import SMOLLM2
from tests.e2e.test_discovery import KEY, encodings, node_in, serves, status_of, wait_for
from tests.netns import Namespace, linked_namespaces
from tests.nodes import MESH_LLM_ARGV

pytestmark = pytest.mark.e2e

A_PORTS, B_PORTS, J_PORTS, S_PORTS = (19437, 19438), (19447, 19448), (19457, 19458), (19467, 19468)


class Joiner:
    """`mesh-llm --client --join-nearby` in a namespace, its output collected line by line."""

    def __init__(self, ns: Namespace, workdir: Path, *args: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir, self.lines = workdir, list[str]()
        argv = [*MESH_LLM_ARGV, "--host", ns.address, "--api-key", KEY, "--port", str(J_PORTS[0]), "--console", str(J_PORTS[1])]
        argv += ["--home", str(workdir / "home"), "--models-dir", str(workdir / "models"), *args]
        env = {"MESH_NODE_SERVICES_IDLE": "false", **os.environ}
        self.process = subprocess.Popen(ns.argv(*argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def code(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if found := re.fullmatch(r"pairing code: (\d{6})", line):
                    return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("no pairing code shown:\n" + "\n".join(self.lines[-40:]))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(10)


def admin(ns: Namespace, home: Path, *command: str) -> str:
    done = subprocess.run(ns.argv(*MESH_LLM_ARGV, "admin", *command, "--home", str(home)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def peer_ids(ns: Namespace, console_port: int) -> set[str]:
    code, body = ns.request(f"http://127.0.0.1:{console_port}/api/status")
    return {peer["id"] for peer in json.loads(body)["peers"]} if code == 200 else set()


def chat(ns: Namespace, api_port: int) -> int:
    body = {"model": SMOLLM2, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4}
    code, _ = ns.request(f"http://{ns.address}:{api_port}/v1/chat/completions", "POST", {"Authorization": f"Bearer {KEY}"}, body)
    return code


def test_a_paired_node_joins_with_its_own_credential_until_revoked(tmp_path: Path, llama_bin_dir: Path) -> None:
    with linked_namespaces("10.221.0") as (one, two):
        a_dir, b_dir = tmp_path / "a", tmp_path / "b"
        with node_in(one, a_dir, *A_PORTS, "--model", SMOLLM2, "--name", "member-a") as a:
            wait_for(f"{SMOLLM2} ready on A", lambda: serves(status_of(one, A_PORTS[1], a, a_dir / "node.log")), 180)
            mesh = mesh_identity.load(a_dir / "home")
            assert mesh is not None
            _, body = one.request(f"http://127.0.0.1:{A_PORTS[1]}/api/status")
            token = json.loads(body)["token"]
            with node_in(one, b_dir, *B_PORTS, "--client", "--join", token, "--name", "member-b") as b:
                wait_for("B joined", lambda: status_of(one, B_PORTS[1], b, b_dir / "node.log").get("join_state") == "joined", 120)
                with captured(two, tmp_path / "lan.bin") as capture:
                    joiner = Joiner(two, tmp_path / "j", "--client", "--join-nearby", "--name", "paired-j")
                    try:
                        shown = joiner.code(90)
                        # Every member lists the request with the code the joiner shows.
                        wait_for("the request on B", lambda: shown in admin(one, b_dir / "home", "pending"), 30)
                        assert shown in admin(one, a_dir / "home", "pending")
                        print(admin(one, a_dir / "home", "approve", shown))
                        j_id = (tmp_path / "j" / "home" / "node-id").read_text().strip()
                        wait_for("J in A's and B's peers", lambda: j_id in peer_ids(one, A_PORTS[1]) and j_id in peer_ids(one, B_PORTS[1]), 90)
                        wait_for("a chat through J", lambda: chat(two, J_PORTS[0]) == 200, 90)
                        paired = mesh_identity.load(tmp_path / "j" / "home")
                        assert paired is not None and paired.secret == b"" and paired.credential, "the paired node holds no credential, or the secret"

                        # A node that was not approved: a forged token for the same mesh is refused.
                        forged = InviteToken(mesh.mesh_id, new_secret(), decode(token).bootstrap, "00" * 32)
                        stranger = subprocess.run(
                            two.argv(*MESH_LLM_ARGV, "--client", "--join", forged.encode(), "--host", two.address, "--api-key", KEY,
                                     "--port", str(S_PORTS[0]), "--console", str(S_PORTS[1]), "--home", str(tmp_path / "s"), "--join-timeout", "20"),
                            capture_output=True, text=True, timeout=120,
                        )  # fmt: skip
                        assert stranger.returncode == 2 and "not issued by this mesh" in stranger.stderr, stranger.stdout + stranger.stderr

                        # Started again with no flag to join: it rejoins through the members it was given.
                        joiner.stop()
                        wait_for("J gone after its leave", lambda: j_id not in peer_ids(one, A_PORTS[1]), 30)
                        joiner = Joiner(two, tmp_path / "j", "--client", "--name", "paired-j")
                        wait_for("J back in A's peers", lambda: j_id in peer_ids(one, A_PORTS[1]), 90)
                        wait_for("a chat through the restarted J", lambda: chat(two, J_PORTS[0]) == 200, 90)

                        # Revoked: it leaves every member's peer list, and its requests stop being answered.
                        print(admin(one, b_dir / "home", "revoke", "paired-j"))
                        wait_for("J gone from A's and B's peers", lambda: j_id not in peer_ids(one, A_PORTS[1]) | peer_ids(one, B_PORTS[1]), 60)
                        wait_for("J's chats refused", lambda: chat(two, J_PORTS[0]) != 200, 90)
                        time.sleep(5)
                        assert j_id not in peer_ids(one, A_PORTS[1]) | peer_ids(one, B_PORTS[1]), "the revoked node came back"
                    finally:
                        joiner.stop()
                        print("\n".join(joiner.lines[-30:]))
                traffic = capture.read_bytes()
                assert len(traffic) > 10_000, f"the capture holds only {len(traffic)} bytes"
                for leaked in encodings(mesh.secret, token):
                    assert leaked.encode() not in traffic, "the mesh secret crossed the LAN"
                assert mesh.secret not in traffic

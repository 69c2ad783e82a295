"""A split's rpc-servers execute commands for the mesh only. Two machines on one LAN (network
namespaces joined by a veth pair, tests/netns.py): A and B in the first run SmolLM2 split over them
(A hosts; B's rpc-server holds its layers and, since both speak TLS in RPC, listens on B's LAN
address for TLS 1.3 with the split's key only, so A's llama-server reaches it directly). A process in
the second, with no mesh credentials, tries every way in:
- a TCP connection to every port of the nodes' LAN address: only the APIs (--host with an API key)
  and B's TLS rpc-server answer; llama-server, consoles, gRPC and plain rpc-servers stay on loopback;
- B's rpc-server directly: a clear-text RPC HELLO, and a TLS 1.3 handshake without the key. The
  rpc-server serves one client at a time, so A's llama-server is killed first (its runner paused
  meanwhile, so that it does not reconnect at once); B's rpc-server takes each of the stranger's
  connections, refuses its handshake (logged with the stranger's address), and then serves A's
  restarted llama-server, which holds the key;
- the mesh's own QUIC endpoint with a credential it made itself for the same mesh id, asking for a
  tunnel to B's rpc-server: refused at admission.
B's rpc-server prints "Accepted client connection" only after a handshake that proved the key and
logs each refused one with the peer's address: every connection from the stranger's address is
in the log as refused (3: the scan's, the HELLO's, the keyless handshake's), so not one reached the
point where a command is read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import SMOLLM2
from tests.e2e.test_discovery import node_in, status_of, wait_for
from tests.netns import Namespace, linked_namespaces

pytestmark = pytest.mark.e2e

A_PORTS, B_PORTS = (19537, 19538), (19547, 19548)
ACCEPTED = "Accepted client connection"  # with TLS: printed once a handshake proved the key
REFUSED = "RPC TLS: handshake from {address}:"  # patch 0004's line for a connection that did not
REPO = Path(__file__).resolve().parents[2]

# Run inside the second namespace: every TCP port of the target address, each connect refused or not.
SCAN = """
import json, socket, sys
host = sys.argv[1]
open_ports = []
for port in range(1, 65536):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.5)
    if s.connect_ex((host, port)) == 0:
        open_ports.append(port)
    s.close()
print(json.dumps(open_ports))
"""

# Run inside the second namespace: straight to B's rpc-server, a clear-text HELLO and a TLS 1.3
# handshake without the key, side by side; each waits (up to 120 s) for the server to take it.
DIRECT = """
import json, socket, ssl, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
HELLO = bytes([14]) + (0).to_bytes(8, "little")  # RPC_CMD_HELLO, no payload
result = {}
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
context.minimum_version = ssl.TLSVersion.TLSv1_3
plain_socket = socket.create_connection((host, port), timeout=120)
tls_socket = socket.create_connection((host, port), timeout=120)

def plain():
    with plain_socket as s:
        s.sendall(HELLO)
        try:
            result["plain"] = s.recv(64).hex()
        except OSError as failure:
            result["plain"] = type(failure).__name__

def tls():
    with tls_socket as raw:
        try:
            with context.wrap_socket(raw) as s:
                s.sendall(HELLO)
                result["tls"] = "handshake done: " + s.recv(64).hex()
        except (ssl.SSLError, OSError) as failure:
            result["tls"] = type(failure).__name__

threads = [threading.Thread(target=plain), threading.Thread(target=tls)]
for t in threads: t.start()
print("connected", flush=True)
for t in threads: t.join()
print(json.dumps(result))
"""

# Run inside the second namespace: our own peer endpoint code, holding a credential it issued
# itself (another secret) for the mesh's id, asks B's QUIC endpoint for a tunnel to B's rpc-server
# and sends it an RPC command (HELLO); prints what came back.
ATTACK = """
import asyncio, json, sys, time
from pathlib import Path
from services.common import credentials, node_identity
from services.common.credentials import Kind
from services.common.invite import new_secret
from services.gateway.peers.admission import LocalNode
from services.gateway.peers.endpoint import open_endpoint
from services.gateway.peers.links import PeerLinks
from services.gateway.tunnel.rpc import RpcTunnels

host, mesh_id, target, rpc_port, home = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])

async def main():
    me = node_identity.load_or_create(home)
    key = node_identity.private_key(me)
    authority = credentials.authority_key(mesh_id, new_secret())
    own = credentials.issue(authority, mesh_id, Kind.MEMBER, "stranger", credentials.public_der(key), time.time(), "member-stranger")
    def local():
        port = endpoint._transport.get_extra_info("sockname")[1]
        return LocalNode(mesh_id, "stranger", f"{host}:{port}", own, key, credentials.raw_public(authority), ())
    endpoint = await open_endpoint(host, 0, identity=me, local=local, handlers={}, idle_timeout=10.0)
    tunnels = RpcTunnels(PeerLinks(endpoint, lambda *_: None), lambda *_: None, connect_timeout=5.0)
    result = {}
    try:
        local_port = await tunnels.open(target, rpc_port)
        reader, writer = await asyncio.open_connection("127.0.0.1", local_port)
        writer.write(bytes([14]) + (0).to_bytes(8, "little"))  # RPC_CMD_HELLO, no payload
        await writer.drain()
        try:
            result["answer"] = (await asyncio.wait_for(reader.read(), 15)).hex()
        except (ConnectionError, asyncio.TimeoutError) as failure:
            result["answer"] = ""
            result["failure"] = type(failure).__name__
    except Exception as failure:
        result["refused"] = f"{type(failure).__name__}: {failure}"
    finally:
        tunnels.close_all()
        endpoint.close()
    print(json.dumps(result))

asyncio.run(main())
"""


def accepted(log: Path) -> int:
    return log.read_text(errors="replace").count(ACCEPTED)


def in_namespace(ns: Namespace, script: str, *args: str) -> str:
    done = subprocess.run(ns.argv(sys.executable, "-c", script, *args), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_process_without_mesh_credentials_gets_no_rpc_command_executed(tmp_path: Path, llama_bin_dir: Path) -> None:
    with linked_namespaces("10.222.0") as (one, two):
        a_dir, b_dir = tmp_path / "a", tmp_path / "b"
        with node_in(one, a_dir, *A_PORTS, "--model", SMOLLM2, "--split", "--log-level", "DEBUG", "--name", "host-a") as a:
            wait_for("A up", lambda: bool(status_of(one, A_PORTS[1], a, a_dir / "node.log").get("mesh_id")), 120)
            _, body = one.request(f"http://127.0.0.1:{A_PORTS[1]}/api/status")
            token, mesh_id = json.loads(body)["token"], json.loads(body)["mesh_id"]
            with node_in(one, b_dir, *B_PORTS, "--join", token, "--log-level", "DEBUG", "--name", "worker-b") as b:

                def split_ready() -> bool:
                    status = status_of(one, A_PORTS[1], a, a_dir / "node.log")
                    modes = [assignment["mode"] for assignment in status.get("assignments", [])]
                    ready = any(m["model_id"] == SMOLLM2 and m["kind"] == "llama-server" and m["state"] == "ready" for m in status.get("models", []))
                    return modes == ["split-host"] and ready

                wait_for("the split over A and B serving", split_ready, 240)
                a_status = status_of(one, A_PORTS[1], a, a_dir / "node.log")
                assert [plan["rpc_tls"] for plan in a_status["assignments"]] == [True], "the split has no TLS key: both nodes should speak TLS here"
                b_status = status_of(one, B_PORTS[1], b, b_dir / "node.log")
                (rpc,) = [m for m in b_status["models"] if m["kind"] == "rpc-server"]
                assert rpc["host"] == one.address, rpc  # TLS: on B's LAN address, where A dials it
                a_log, b_log = a_dir / "node.log", b_dir / "node.log"
                assert f"endpoint={one.address}:{rpc['port']}" in a_log.read_text(errors="replace"), "A's llama-server does not reach B directly"
                b_address = b_status["address"]  # B's QUIC endpoint, as peers dial it
                before = accepted(b_log)
                assert before >= 1, "the host's own connection to B's rpc-server is not in B's log: the count cannot be read"

                open_ports = set(json.loads(in_namespace(two, SCAN, one.address)))
                print(f"TCP ports open on {one.address}: {sorted(open_ports)}; B's TLS rpc-server on {rpc['port']}")
                # The APIs (--host with an API key) and B's TLS rpc-server: not llama-server, consoles or gRPC.
                assert open_ports == {A_PORTS[0], B_PORTS[0], rpc["port"]}

                # Straight to B's rpc-server. It serves one client at a time (A's llama-server) and
                # queues one or two more (the scan's waits there now): A's runner is paused and A's
                # llama-server (the only process with --rpc <B's address>) killed, so that B's
                # rpc-server is free for the stranger; A's runner then resumes and starts it again.
                (llama,) = [p for p in psutil.process_iter(["cmdline"]) if f"{one.address}:{rpc['port']}" in " ".join(p.info["cmdline"] or ())]
                runner = llama.parent()
                assert runner is not None and "services.runner" in " ".join(runner.cmdline())
                runner.suspend()
                try:
                    llama.kill()
                    direct = subprocess.run(
                        two.argv(sys.executable, "-c", DIRECT, one.address, str(rpc["port"])), cwd=REPO, capture_output=True, text=True, timeout=180
                    )
                finally:
                    runner.resume()
                assert direct.returncode == 0, direct.stdout + direct.stderr
                answer = json.loads(direct.stdout.strip().splitlines()[-1])
                print(f"the stranger straight to B's rpc-server: {answer}")
                assert answer["plain"] == "", answer  # closed with nothing said: no HELLO answered
                assert not answer["tls"].startswith("handshake done"), answer
                refused = REFUSED.format(address=two.address)
                # The scan's connection, the HELLO's and the handshake's: each refused, none accepted.
                wait_for("B's refusals of the stranger's 3 connections", lambda: b_log.read_text(errors="replace").count(refused) == 3, 30)
                wait_for("the split serving again", split_ready, 240)
                after_kill = accepted(b_log)
                assert after_kill > before, "A's restarted llama-server did not reconnect: the refusals prove nothing"

                answer = json.loads(in_namespace(two, ATTACK, two.address, mesh_id, b_address, str(rpc["port"]), str(tmp_path / "stranger")))
                print(f"the stranger's tunnel to B's rpc-server: {answer}")
                # Refused at admission: the stranger's local tunnel end closes at once, with nothing read.
                assert answer == {"answer": ""} or "failure" in answer and answer["failure"] != "TimeoutError", answer

                # B refused the stranger at admission (its log line may land a moment after the reset).
                wait_for("B's refusal in its log", lambda: "not issued by this mesh" in b_log.read_text(errors="replace"), 10)
                assert accepted(b_log) == after_kill, "a connection reached B's rpc-server"
                assert b_log.read_text(errors="replace").count(refused) == 3

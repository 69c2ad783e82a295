"""`mesh-llm rotate-key` and `mesh-llm admin …`: gRPC calls to the running node found under --home.

Owns the node.json file that tells these commands where the node's services listen.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import grpc

from services.cli.flags import UsageError
from services.common import credentials, node_identity
from services.common.invite import InviteToken
from services.common.settings import NodeSettings
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc, placement_pb2, placement_pb2_grpc

NODE_FILE = "node.json"


def save_ports(home: Path, environments: dict[str, dict[str, str]], advertised: tuple[str, ...], console: int, host: str) -> None:
    node = environments["gossip"]
    ports = {name: int(node[f"MESH_NODE_{name.upper()}_GRPC_PORT"]) for name in ("gateway", "gossip", "placement", "runner")}
    home.mkdir(parents=True, exist_ok=True)
    (home / NODE_FILE).write_text(json.dumps({"grpc_ports": ports, "addresses": list(advertised), "console": f"http://{host}:{console}"}))


def _gossip(home: Path) -> tuple[gossip_pb2_grpc.GossipStub, grpc.Channel, dict]:
    try:
        node = json.loads((home / NODE_FILE).read_text())
    except FileNotFoundError:
        raise UsageError(f"no node has run with home {home} (start one, or pass --home)") from None
    channel = grpc.insecure_channel(f"127.0.0.1:{node['grpc_ports']['gossip']}")
    return gossip_pb2_grpc.GossipStub(channel), channel, node


def run(args: argparse.Namespace) -> None:
    home = args.home or NodeSettings().home
    command = args.command
    stub, channel, node = _gossip(home)
    try:
        if command[0] == "rotate-key":
            mesh = stub.RotateSecret(gossip_pb2.RotateSecretRequest(), timeout=5)
            token = InviteToken(mesh.mesh_id, mesh.secret, tuple(node.get("addresses") or [node["address"]]), node_identity.load_or_create(home).fingerprint)
            print(f"new mesh secret (version {mesh.secret_version}); old invite tokens no longer admit new nodes.")
            print(f"invite token: {token.encode()}")
        elif command[0] == "drop":
            if len(command) != 2:
                raise UsageError("usage: mesh-llm drop MODEL")
            with grpc.insecure_channel(f"127.0.0.1:{node['grpc_ports']['placement']}") as placement:
                placement_pb2_grpc.PlacementStub(placement).Drop(placement_pb2.DropRequest(model_id=command[1]), timeout=30)
            print(f"stopped serving {command[1]} on this node")
        elif command[1:] == ["leave"]:
            stub.Leave(gossip_pb2.LeaveRequest(), timeout=5)
            print("left the mesh")
        elif command[1:] == ["pending"]:
            view = next(iter(stub.Watch(gossip_pb2.WatchRequest(), timeout=5)))
            print(pending_table(view) or "no pairing request is waiting")
        elif command[1:2] == ["approve"] and len(command) == 3:
            change = stub.Approve(gossip_pb2.ApproveRequest(code=command[2]), timeout=5)
            print(f"approved {change.name or change.node_id} ({change.node_id}): credential {change.credential_id}")
        elif command[1:2] == ["revoke"] and len(command) == 3:
            change = stub.Revoke(gossip_pb2.RevokeRequest(node=command[2]), timeout=5)
            who = "the public-join token" if change.credential_id.startswith("public-") else f"{change.name or change.node_id} ({change.node_id})"
            print(f"revoked {who}: credential {change.credential_id}; members refuse it from now on")
        elif command[1:] == ["paired"]:
            view = next(iter(stub.Watch(gossip_pb2.WatchRequest(), timeout=5)))
            print(paired_table(view) or "no node joined by pairing")
        elif command[1:] in (["peers"], ["self"]):
            view = next(iter(stub.Watch(gossip_pb2.WatchRequest(), timeout=5)))
            records = [(p.record, p.address, p.status, p.rtt) for p in view.peers] if command[1] == "peers" else [(view.self, view.address, "self", 0.0)]
            for record, address, status, rtt in records:
                print(f"{record.node_id}  {record.name:<16} {status:<8} {address:<22} rtt {rtt * 1000:6.1f} ms  role {record.role}")
        else:
            raise UsageError("admin commands: peers, self, leave, pending, approve CODE, revoke NODE|public, paired")
    except grpc.RpcError as failure:
        if failure.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            raise UsageError(failure.details()) from None
        raise UsageError(f"the node at {home} does not answer: {failure.code().name}") from None
    finally:
        channel.close()


def pending_table(view: gossip_pb2.MeshView) -> str:
    """Pairing requests waiting for approval: code, node, name, and the member they asked."""
    now = time.time()
    return "\n".join(f"{p.code}  {p.node_id}  {p.name:<16} asked {now - p.requested_at:4.0f} s ago through {p.via}" for p in view.pairing)


def paired_table(view: gossip_pb2.MeshView) -> str:
    """Nodes that joined by pairing, with their credential and whether it is revoked."""
    revoked = set(view.revoked)
    rows = []
    for encoded in view.paired:
        try:
            credential = credentials.decode(encoded)
        except credentials.CredentialError:
            continue
        state = "revoked" if credential.credential_id in revoked else "admitted"
        rows.append(f"{credential.node_id}  credential {credential.credential_id}  {state}")
    return "\n".join(rows)

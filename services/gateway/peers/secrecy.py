"""The mesh secret goes only to members: gossip messages to or from a peer admitted without it
(paired, public) have it taken out here, at the one place every peer message passes.

Gossip builds one state for everyone; the gateway is what knows, per connection, what the peer was
admitted as (admission.py), so the rule lives where that knowledge is. A paired or public node never
learns the secret, and cannot hand members a forged one either.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from services.common.credentials import Credential, Kind
from services.proto.mesh.v1 import peer_pb2


def member(credential: Credential | None) -> bool:
    return credential is not None and credential.kind == Kind.MEMBER


def withheld(payload: bytes, credential: Credential | None) -> bytes:
    """A gossip message as a peer admitted with `credential` may send or receive it."""
    if member(credential):
        return payload
    try:
        message = peer_pb2.GossipMessage.FromString(payload)
    except DecodeError:
        return payload  # not ours to judge: gossip refuses garbage itself
    kind = message.WhichOneof("kind")
    if kind not in ("ping", "ack"):
        return payload
    state = message.ping if kind == "ping" else message.ack
    if not state.HasField("secret"):
        return payload
    state.ClearField("secret")
    return message.SerializeToString()

"""The TLS key of a split this node hosts: what lets its llama-server talk to the workers'
rpc-servers directly, with no relay (llama.cpp/patches/0004, services/runner/rpc_tls.py).

A split gets a key only when every node in it speaks TLS in RPC (its record says rpc_tls); else ""
and the split runs plain RPC through QUIC tunnels, as before. The key is an HMAC of the host's own
secret (a file in its home, never sent) over the model, the workers and the mesh's revoked
credentials: stable while the split stands (a replan or a restart of placement does not restart
it), new when a worker changes or a credential is revoked, so a node revoked while it held a key
(gossip carries the key to every member) cannot use it. Pure: must not import grpc or asyncio.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace

from services.common.records import Assignment, Mode, NodeRecord

KEY_LABEL = b"mesh-llm split rpc key v1\0"


def split_key(secret: bytes, model_id: str, workers: Iterable[str], revoked: Iterable[str]) -> str:
    """64 hex digits: the pre-shared key of one split; "" without a secret."""
    if not secret:
        return ""
    message = json.dumps([model_id, list(workers), sorted(revoked)]).encode()
    return hmac.new(secret, KEY_LABEL + message, hashlib.sha256).hexdigest()


def keyed(
    assignments: Iterable[Assignment], own: NodeRecord, records: Mapping[str, NodeRecord], secret: bytes, revoked: Iterable[str]
) -> tuple[Assignment, ...]:
    """The assignments with the key of each split this node hosts ("" where a node of it cannot
    speak TLS, or the record of a worker is not known)."""
    revoked = frozenset(revoked)

    def key(assignment: Assignment) -> str:
        nodes = [own, *(records.get(worker) for worker in assignment.workers)]
        if not all(node is not None and node.rpc_tls for node in nodes):
            return ""
        return split_key(secret, assignment.model_id, assignment.workers, revoked)

    return tuple(replace(a, rpc_key=key(a)) if a.mode == Mode.SPLIT_HOST and a.host == own.node_id else a for a in assignments)

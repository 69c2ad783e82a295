"""What a plan asks the node to do, and what it has to say: pure data, performed by executor.py.

Must not import grpc or asyncio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from services.common.records import ProcessKind
from services.placement.facts import LlamaRequest, RpcRequest


@dataclass(frozen=True)
class Publish:
    """Replace these fields of this node's gossip record."""

    values: Mapping[str, object]


@dataclass(frozen=True)
class Inspect:
    """Ask the runner what a model's file holds (layers, experts) before planning with it."""

    model_id: str
    path: str


@dataclass(frozen=True)
class OpenTunnel:
    """Ask the gateway where llama-server reaches a worker's rpc-server: directly at `direct_host`
    (a TLS rpc-server) if a connection gets through, else a loopback port relayed over QUIC."""

    address: str  # the worker's QUIC address
    port: int
    direct_host: str = ""  # "": a plain rpc-server, reached through a tunnel only


@dataclass(frozen=True)
class Serve:
    request: LlamaRequest


@dataclass(frozen=True)
class ServeRpc:
    request: RpcRequest


@dataclass(frozen=True)
class Fetch:
    """Ask the runner to download a catalog model the mesh's demand gave this node (it serves it once on disk)."""

    model_id: str


@dataclass(frozen=True)
class Stop:
    model_id: str
    kind: ProcessKind


Action = Publish | Inspect | OpenTunnel | Serve | ServeRpc | Stop | Fetch
# Actions whose answer the plan needs before it can go on: the loop plans again after them.
LEARNING = (Inspect, OpenTunnel)


class Event(StrEnum):
    """What placement logs of its decisions (the log line's message)."""

    DECIDED = "placement decided"
    PROMOTED = "promoted"
    DEMOTED = "demotion"
    WORKER_LEFT_OUT = "split worker left out"


@dataclass(frozen=True)
class Note:
    """One event of a plan for the log (and the metrics)."""

    event: Event
    fields: Mapping[str, object] = field(default_factory=dict[str, object])

"""What the plan knows besides the mesh: frozen inputs the loop gathers and the plan reads.

The models on this node's disk and what the runner read of them, what the runner reports it runs,
what placement last asked of it, the RPC tunnels open, and the plan's own memory from one round to
the next (promotions settling, late workers' clocks). Pure data: must not import grpc or asyncio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.common.records import Assignment, Device, Download, ProcessKind, ServedModel
from services.placement.settings import PlacementSettings

Key = tuple[str, ProcessKind]  # one process of the runner: (model id, kind)
Experts = tuple[tuple[int, ...], ...]  # per layer: expert ids


@dataclass(frozen=True)
class LocalModel:
    """A model file on this node's disk, as the runner found it."""

    model_id: str
    path: str
    size_bytes: int
    fingerprint: str = ""  # of the file's content: tells same-named files apart
    source: str = ""  # downloaded from the Hub: "org/repo/path.gguf" (a split's workers may fetch its layers there)
    catalog: bool = False  # the file of a catalog entry


@dataclass(frozen=True)
class Inspection:
    """What the runner read of a model's file; experts 0 for a dense model."""

    layers: int
    experts: int = 0
    experts_used: int = 0
    expert_bytes: int = 0  # one expert of one layer
    trunk_bytes: int = 0  # everything but the experts
    ranking: Experts = ()  # per layer: expert ids, most used first


@dataclass(frozen=True)
class LlamaRequest:
    """A llama-server as placement asks the runner for it (solo, a split's host, an expert shard)."""

    model_id: str
    path: str
    rpc_endpoints: tuple[str, ...] = ()  # host:port of the RPC tunnels to the split's workers
    worker_layers: int = 0
    tensor_split: tuple[float, ...] = ()
    shard: Experts = ()  # the experts this node's shard keeps, per layer
    draft: str = ""  # path of its draft model for speculative decoding (drafts.py); empty: none
    rpc_key: str = field(default="", repr=False)  # a split's TLS key (split_keys.py); "": plain RPC
    host_last: bool = False  # a split's host with a GPU: its blocks run there, after the workers' (processes.host_last)

    @property
    def key(self) -> Key:
        return (self.model_id, ProcessKind.LLAMA_SERVER)


@dataclass(frozen=True)
class RpcRequest:
    """An rpc-server for a peer's split, as placement asks the runner for it."""

    model_id: str
    path: str
    layers: tuple[int, ...]  # the split's layers per node: host first
    worker_index: int
    source: str = ""  # path empty: the model's file on the Hub, whose layers the runner fetches
    fingerprint: str = ""  # of the host's file, which the fetched one must match
    models_dir: str = ""  # where fetched layers are kept
    rpc_key: str = field(default="", repr=False)  # the split's TLS key: the rpc-server speaks TLS where peers reach it; "": plain, on loopback
    host_last: bool = False  # the split's host runs on a GPU, after the workers: this worker holds earlier blocks

    @property
    def key(self) -> Key:
        return (self.model_id, ProcessKind.RPC_SERVER)


Request = LlamaRequest | RpcRequest


@dataclass(frozen=True)
class Memory:
    """What the plan carries from one round to the next; each round's plan returns the next one."""

    assignments: tuple[Assignment, ...] = ()  # the last decision
    promoted: Mapping[str, str] = field(default_factory=dict[str, str])  # model -> why this node serves it for demand
    pending: Mapping[str, float] = field(default_factory=dict[str, float])  # promotions settling: model -> first wanted (monotonic)
    waiting: Mapping[tuple[str, str], float] = field(default_factory=dict[tuple[str, str], float])  # (model, worker) not coming up -> since
    excluded: Mapping[str, float] = field(default_factory=dict[str, float])  # workers left out of our split plans -> until
    strikes: Mapping[str, int] = field(default_factory=dict[str, int])  # times each worker was left out


@dataclass(frozen=True)
class Facts:
    settings: PlacementSettings
    memory_offered: int  # bytes this node offers the mesh (0 on a client): --max-vram, else its devices' memory, else its RAM
    asked: tuple[str, ...] = ()  # model ids this node serves of its own (--model; none on a standby)
    on_disk: Mapping[str, LocalModel] = field(default_factory=dict[str, LocalModel])  # every model this node could serve
    inspections: Mapping[str, Inspection] = field(default_factory=dict[str, Inspection])
    drafts: Mapping[str, str] = field(default_factory=dict[str, str])  # model id -> path of its draft model (drafts.py)
    dropped: frozenset[str] = frozenset()  # by `mesh-llm drop`
    running: tuple[ServedModel, ...] = ()  # the runner's report, by (model id, kind)
    downloads: tuple[Download, ...] = ()  # the runner's downloads from the Hub (a --model not on disk)
    sent: Mapping[Key, Request] = field(default_factory=dict[Key, Request])  # what the runner was last asked, per process
    # (worker address, rpc port) -> where llama-server's --rpc reaches it: the worker's TLS
    # rpc-server itself ("10.0.0.2:50052") or a QUIC tunnel's loopback port ("127.0.0.1:41234").
    tunnels: Mapping[tuple[str, int], str] = field(default_factory=dict[tuple[str, int], str])
    memory: Memory = Memory()
    on_hub: Mapping[str, LocalModel] = field(default_factory=dict[str, LocalModel])  # catalog models not on disk (no path): fetched for demand
    devices: tuple[Device, ...] = ()  # this node's accelerators, as the runner listed them (none: RAM, or a client)
    rpc_tls: bool = False  # the runner's llama.cpp speaks TLS in RPC (its Models reply)
    split_secret: bytes = field(default=b"", repr=False)  # this node's own, for its splits' keys (split_keys.py)

    def running_by_key(self) -> dict[Key, ServedModel]:
        return {(served.model_id, served.kind): served for served in self.running}

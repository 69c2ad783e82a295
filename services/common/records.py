"""The mesh's domain types: a node's record, the models it serves, placement's assignments.

Pure data; protobuf conversion lives in records_proto.py. Must not import grpc.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum


class Mode(StrEnum):
    """What a node does for one model (an Assignment's mode)."""

    SOLO = "solo"  # the whole model in this node's llama-server
    SPLIT_HOST = "split-host"  # llama-server with --rpc over workers' rpc-servers
    SPLIT_WORKER = "split-worker"  # an rpc-server for a host's split
    MOE_SHARD = "moe-shard"  # a llama-server over this node's shard of an expert split
    UNSERVED = "unserved"  # wanted, but no plan fits (the reason says why)
    DROPPED = "dropped"  # stopped by `mesh-llm drop`


# Modes in which a node runs something for the model (its role is then "serving").
SERVING_MODES = frozenset({Mode.SOLO, Mode.SPLIT_HOST, Mode.SPLIT_WORKER, Mode.MOE_SHARD})
# Modes in which a node answers the model's requests (a split's worker does not: its host does).
ANSWERING_MODES = SERVING_MODES - {Mode.SPLIT_WORKER}


class Role(StrEnum):
    """What a node is in the mesh, as the console shows it."""

    SERVING = "serving"
    STANDBY = "standby"  # offers memory, serves nothing yet
    CLIENT = "client"  # API only: offers no memory
    LOADING = "loading"  # shown only: serving, with a model still starting
    DOWNLOADING = "downloading"  # shown only: serving nothing yet, fetching a model it was asked for


class ProcessKind(StrEnum):
    LLAMA_SERVER = "llama-server"  # answers the API
    RPC_SERVER = "rpc-server"  # a split's worker


class PeerStatus(StrEnum):
    """A member's standing in the failure detector (SWIM), as gossip spreads it."""

    ALIVE = "alive"
    SUSPECT = "suspect"  # missed a probe: still a member (placement keeps its part), not routed to while alive nodes serve
    DEAD = "dead"  # suspected for the whole suspicion timeout
    LEFT = "left"  # said goodbye


class JoinState(StrEnum):
    """How this node's join of a mesh went, as the CLI and the console report it."""

    STARTED = ""  # this node started the mesh: nothing to join
    JOINING = "joining"
    JOINED = "joined"
    FAILED = "failed"  # no seed answered


class ProcessState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ServedModel:
    model_id: str
    path: str
    state: ProcessState
    port: int = 0
    restarts: int = 0
    last_error: str = ""
    retry_at: float = 0.0
    size_bytes: int = 0
    kind: ProcessKind = ProcessKind.LLAMA_SERVER
    fingerprint: str = ""  # of the model's file (an expert shard: of the file it was cut from)
    slots: int = 0  # llama-server: requests it serves at once (--parallel); 0: an rpc-server, or not told
    host: str = ""  # rpc-server with TLS: the address it listens on, which peers dial directly; "": 127.0.0.1


class DownloadPolicy(StrEnum):
    """What the mesh may make a node download (--download): a model its demand asks a standby to
    serve, a split's layers. A model named by --model is fetched whatever the policy but never."""

    NEVER = "never"  # only models already on disk
    CATALOG = "catalog"  # catalog models: known publishers and sizes
    ANY = "any"  # any Hub model a member names


class DownloadState(StrEnum):
    FETCHING = "fetching"
    DONE = "done"
    FAILED = "failed"  # the error says why; a transient failure is retried (retry_at)


@dataclass(frozen=True)
class Download:
    """A model the runner fetches from the Hub, as the console shows it."""

    model_id: str  # the name it will be served under (a Hub spec itself until its file is known)
    state: DownloadState
    done_bytes: int = 0
    total_bytes: int = 0  # 0 until the Hub said
    error: str = ""
    retry_at: float = 0.0  # unix time of the next attempt after a transient failure; 0: none


@dataclass(frozen=True)
class ModelFile:
    """A model a node holds: the name clients use and a fingerprint of the file's content. Two
    files under one name are two models: never in one split or shard plan."""

    model_id: str
    fingerprint: str


@dataclass(frozen=True)
class Assignment:
    model_id: str
    mode: Mode
    reason: str
    host: str = ""  # node id of the split's host
    workers: tuple[str, ...] = ()  # node ids of the split's workers, in --rpc order
    layers: tuple[int, ...] = ()  # layers per node: host first, then the workers
    promoted: bool = False  # served for demand (a standby's choice), not named by --model
    # moe-shard: (node id, experts kept per layer) for every node of the expert split (its planner)
    # or for this node only (the others).
    shards: tuple[tuple[str, tuple[tuple[int, ...], ...]], ...] = ()
    # split-host: where on the Hub the model's file is ("org/repo/path.gguf"; "" when it is not a Hub
    # file): a worker without the file fetches its layers from there.
    source: str = ""
    # split: the pre-shared key (64 hex digits) of TLS between the host's llama-server and the
    # workers' rpc-servers, which then listen where peers reach them; "": plain RPC, tunnels only.
    rpc_key: str = field(default="", repr=False)

    def experts_of(self, node_id: str) -> tuple[tuple[int, ...], ...]:
        return next((layers for node, layers in self.shards if node == node_id), ())


@dataclass(frozen=True)
class Publicity:
    """How a mesh shows itself beyond its members: its name (LAN announcements, the public listing),
    and whether and how it is listed on Nostr. Set by a member's flags (its `origin`), copied by
    the members given none, so the mesh stays listed when the member that asked for it leaves."""

    mesh_name: str = ""
    region: str = ""
    max_clients: int = 0  # the listing's client limit: delisted while this many clients are in; 0: no limit
    publish: bool = False  # listed on the Nostr relays (--publish)
    origin: str = ""  # node id of the member whose flags set these; "": none did


@dataclass(frozen=True)
class Device:
    """An accelerator of a node as its llama.cpp build lists it (services/common/devices.py)."""

    name: str  # llama.cpp's device name: CUDA0, MTL0, Vulkan0...
    description: str  # the card: "NVIDIA H200", "Apple M2 Pro"
    total_bytes: int
    free_bytes: int  # when the runner started; an NVIDIA card's: as nvidia-smi said last (services/runner/server.py)

    @property
    def used_bytes(self) -> int:
        return max(0, self.total_bytes - self.free_bytes)


@dataclass(frozen=True)
class NodeRecord:
    node_id: str
    name: str
    role: Role = Role.STANDBY
    memory_offered_bytes: int = 0
    models_on_disk: tuple[str, ...] = ()
    served: tuple[ServedModel, ...] = ()
    assignments: tuple[Assignment, ...] = ()
    version: int = 0
    updated_at: float = 0.0
    model_files: tuple[ModelFile, ...] = ()  # fingerprints of the models on disk ("" where a node sent none)
    downloads: tuple[Download, ...] = ()  # models being fetched from the Hub (and the last failures)
    download_policy: DownloadPolicy = DownloadPolicy.NEVER  # what the mesh may make it download (--download)
    publicity: Publicity = Publicity()  # the mesh's name and listing, as this member holds them
    devices: tuple[Device, ...] = ()  # its accelerators (none: it runs models from RAM)
    rpc_tls: bool = False  # its llama.cpp speaks TLS 1.3 in RPC (patch 0004, a loadable libssl 3)

    def fingerprint_of(self, model_id: str) -> str:
        """The fingerprint of this node's file for the model; "" when it sent none."""
        return next((file.fingerprint for file in self.model_files if file.model_id == model_id), "")


@dataclass(frozen=True)
class SelfUpdate:
    """Replaces the named fields of a record; the owner of each field sends it."""

    fields: frozenset[str]
    values: dict[str, object] = field(default_factory=dict)


UPDATABLE = frozenset(
    {
        "role",
        "served",
        "assignments",
        "memory_offered_bytes",
        "models_on_disk",
        "model_files",
        "downloads",
        "download_policy",
        "publicity",
        "devices",
        "rpc_tls",
    }
)


def apply_update(record: NodeRecord, update: SelfUpdate, now: float) -> NodeRecord:
    """The record with the update applied and its version bumped, or unchanged if nothing differs."""
    unknown = update.fields - UPDATABLE
    if unknown:
        raise ValueError(f"fields not updatable: {sorted(unknown)}")
    changes = {name: update.values[name] for name in update.fields if getattr(record, name) != update.values[name]}
    if not changes:
        return record
    return replace(record, **changes, version=record.version + 1, updated_at=now)


@dataclass(frozen=True)
class Peer:
    """A live member of the mesh as this node sees it."""

    record: NodeRecord
    address: str
    status: PeerStatus  # alive or suspect: the dead and those who left are not peers
    rtt: float = 0.0  # seconds, this node's last measurement


@dataclass(frozen=True)
class MeshView:
    """This node's record and the peers it knows, as gossip last reported them."""

    own: NodeRecord
    peers: tuple[Peer, ...] = ()
    mesh_id: str = ""
    secret: bytes = b""
    secret_version: int = 0
    address: str = ""  # this node's QUIC address
    join_error: str = ""
    join_state: JoinState = JoinState.STARTED
    gossip_rounds: int = 0
    demand: tuple[ModelDemand, ...] = ()
    credential: bytes = b""  # without the secret: this node's credential (paired or public), encoded
    signing_key: bytes = b""  # the public credential's shared key; "" otherwise
    authority: bytes = b""  # without the secret: the mesh authority's public key
    revoked: frozenset[str] = frozenset()  # credential ids revoked in this mesh
    pairing: tuple[PairingRequest, ...] = ()  # requests to join waiting for a member's approval
    paired: tuple[bytes, ...] = ()  # credentials members issued by pairing, encoded

    def members(self) -> tuple[Peer, ...]:
        """The peers placement counts: alive or suspect. A suspect is a member until it is declared
        dead (a missed probe on a loaded machine must not restart a split); routing prefers the alive."""
        return tuple(peer for peer in self.peers if peer.status in (PeerStatus.ALIVE, PeerStatus.SUSPECT))


@dataclass(frozen=True)
class PairingRequest:
    """A node asking to join, shown with its code on every member until one approves (gossip/access.py)."""

    code: str
    node_id: str
    name: str
    public_key: bytes  # DER of the joiner's key: what its credential will bind
    via: str  # node id of the member holding the joiner's connection
    requested_at: float  # unix time


@dataclass(frozen=True)
class ModelDemand:
    """One model's demand over the whole mesh (see gossip/demand.py)."""

    model_id: str
    requests: int = 0
    recent: int = 0  # requests in the last hour
    last_seen: float = 0.0  # unix time
    pinned: bool = False  # a live node serves it by --model

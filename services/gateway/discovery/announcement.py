"""What a node tells the LAN about itself (DNS-SD TXT properties), and reading others' back.

Pure: a node's announcement from its mesh view, its TXT properties, a received TXT record parsed
with every size bounded (untrusted: anyone on the LAN may answer, with anything), and the meshes
that a set of announcements describes. No sockets, no zeroconf here (lan.py owns those).

The announcement carries the mesh id and name, the node's id and name, the models it serves (the
first few by name, and how many in all), its QUIC port, the memory it offers and the mesh-llm
version. Never the mesh secret, nor anything derived from it: the invite token and the admission
proof stay on the authenticated QUIC channel.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.common import addresses
from services.common.exposure import is_loopback
from services.common.records import MeshView, ProcessKind, ProcessState

SERVICE_TYPE = "_mesh-llm._udp.local."
TXT_VERSION = "1"  # the layout of the properties below; a reader skips layouts it does not know

# Bytes per value at most (a TXT string holds 255 with its key): a name longer is cut when we
# announce it and refused when we read it.
NAME_BYTES = 63
MODELS_BYTES = 200  # the served models' names, comma-separated: the first that fit, the count says how many
VERSION_BYTES = 32
MAX_MODELS = 10_000  # a larger count is a lie, not a mesh
MAX_MEMORY = 2**60  # bytes: an exbibyte offered is a lie too
INSTANCE_NAME_BYTES = 63  # a DNS label

IDENTIFIER = re.compile(r"[0-9A-Za-z_-]{1,64}")  # mesh and node ids (ours are 16 hex digits)
# Whatever else may ride in a record by the time it is read (zeroconf keeps at most a packet).
TXT_BYTES = 1300

LIVE_STATES = frozenset({ProcessState.STARTING, ProcessState.READY})  # a model announced as served


@dataclass(frozen=True)
class Announcement:
    mesh_id: str
    mesh_name: str
    node_id: str
    node_name: str
    models: tuple[str, ...]  # served models by name, as many as fit MODELS_BYTES
    models_total: int  # how many it serves in all
    port: int  # of the QUIC endpoint
    memory_bytes: int  # offered to the mesh
    version: str  # mesh-llm's
    addresses: tuple[str, ...] = ()  # IP addresses peers dial it at (the A/AAAA records, not TXT)


@dataclass(frozen=True)
class NotAnnounced:
    """Why this node announces nothing right now (the view is incomplete, or nothing is reachable)."""

    reason: str


def announcement_of(view: MeshView, advertised: Sequence[str], version: str) -> Announcement | NotAnnounced | None:
    """This node's announcement: from its view, at the addresses it tells peers to dial (host:port,
    the first one's port; host names and loopback addresses left out, as the LAN cannot use them).
    None while gossip has not told the node's id and mesh yet: nothing to say, nothing to explain."""
    if not view.own.node_id or not view.mesh_id:
        return None
    reachable = _reachable(advertised)
    if not reachable:
        return NotAnnounced(f"no address another machine could dial among {list(advertised)}")
    port = reachable[0][1]
    served = sorted({s.model_id for s in view.own.served if s.kind == ProcessKind.LLAMA_SERVER and s.state in LIVE_STATES})
    return Announcement(
        mesh_id=view.mesh_id,
        mesh_name=_cut(view.own.publicity.mesh_name, NAME_BYTES),  # --mesh-name, ours or copied from the mesh
        node_id=view.own.node_id,
        node_name=_cut(view.own.name, NAME_BYTES),
        models=_fitting(served),
        models_total=len(served),
        port=port,
        memory_bytes=min(view.own.memory_offered_bytes, MAX_MEMORY),
        version=_cut(version, VERSION_BYTES),
        addresses=tuple(host for host, p in reachable if p == port),
    )


def properties(announcement: Announcement) -> dict[str, str]:
    """The TXT properties of an announcement: small, and nothing secret."""
    return {
        "txtvers": TXT_VERSION,
        "mesh_id": announcement.mesh_id,
        "mesh_name": announcement.mesh_name,
        "node_id": announcement.node_id,
        "node_name": announcement.node_name,
        "models": ",".join(announcement.models),
        "models_total": str(announcement.models_total),
        "port": str(announcement.port),
        "memory": str(announcement.memory_bytes),
        "version": announcement.version,
    }


def instance_name(announcement: Announcement) -> str:
    """The DNS-SD instance: the node's name for people (avahi-browse), its id for uniqueness."""
    readable = re.sub(r"[^0-9A-Za-z-]+", "-", announcement.node_name).strip("-")
    room = INSTANCE_NAME_BYTES - len(announcement.node_id) - 1
    prefix = readable[:room].rstrip("-")
    return f"{prefix}-{announcement.node_id}" if prefix else announcement.node_id


class BadAnnouncement(ValueError):
    """A TXT record we will not believe; the message says which part."""


def parse(txt: Mapping[bytes, bytes | None], host_addresses: Sequence[str] = ()) -> Announcement:
    """An announcement read from the LAN, or BadAnnouncement: unknown layout, a missing, oversized,
    non-text or unprintable field, a count or port out of range."""
    if sum(len(key) + len(value or b"") + 2 for key, value in txt.items()) > TXT_BYTES:
        raise BadAnnouncement("TXT record too large")
    text = {key.decode("ascii", "replace"): value for key, value in txt.items()}
    if _text(text, "txtvers", 8) != TXT_VERSION:
        raise BadAnnouncement("unknown txtvers")
    mesh_id, node_id = _text(text, "mesh_id", 64), _text(text, "node_id", 64)
    for name, value in (("mesh_id", mesh_id), ("node_id", node_id)):
        if not IDENTIFIER.fullmatch(value):
            raise BadAnnouncement(f"{name} is not an identifier")
    models_text = _text(text, "models", MODELS_BYTES)
    models = tuple(models_text.split(",")) if models_text else ()
    if any(not model for model in models):
        raise BadAnnouncement("an empty model name")
    total = _number(text, "models_total", MAX_MODELS)
    if total < len(models):
        raise BadAnnouncement("models_total below the models listed")
    port = _number(text, "port", 65535)
    if port == 0:
        raise BadAnnouncement("port 0")
    return Announcement(
        mesh_id=mesh_id,
        mesh_name=_text(text, "mesh_name", NAME_BYTES),
        node_id=node_id,
        node_name=_text(text, "node_name", NAME_BYTES),
        models=models,
        models_total=total,
        port=port,
        memory_bytes=_number(text, "memory", MAX_MEMORY),
        version=_text(text, "version", VERSION_BYTES),
        addresses=tuple(host_addresses),
    )


@dataclass(frozen=True)
class LanNode:
    """A node heard on the LAN, with the time its QUIC port took to answer (None: it did not)."""

    announcement: Announcement
    rtt: float | None = None  # seconds


@dataclass(frozen=True)
class LanMesh:
    """A mesh as the LAN's announcements describe it (untrusted: nothing here was proven)."""

    mesh_id: str
    mesh_name: str
    nodes: tuple[LanNode, ...]
    models: tuple[str, ...] = ()  # served by any of its nodes (as far as they listed them)
    models_total: int = 0  # the most any one node serves: at least this many models in all
    memory_bytes: int = 0  # offered by its nodes together
    rtt: float | None = None  # seconds to the nearest node that answered


@dataclass(frozen=True)
class LanScan:
    """What a browse heard: the meshes, and how many announcements were not believed."""

    meshes: tuple[LanMesh, ...]
    ignored: int = 0
    reasons: tuple[str, ...] = field(default=())  # why, one per ignored announcement


def meshes_of(nodes: Iterable[LanNode]) -> tuple[LanMesh, ...]:
    """The meshes the nodes belong to, the nearest first (then by id); a node heard twice counts once."""
    unique = {node.announcement.node_id: node for node in nodes}
    by_mesh: dict[str, list[LanNode]] = {}
    for node in unique.values():
        by_mesh.setdefault(node.announcement.mesh_id, []).append(node)
    meshes = [_mesh(mesh_id, members) for mesh_id, members in by_mesh.items()]
    return tuple(sorted(meshes, key=lambda mesh: (mesh.rtt is None, mesh.rtt or 0.0, mesh.mesh_id)))


def _mesh(mesh_id: str, members: list[LanNode]) -> LanMesh:
    members.sort(key=lambda node: (node.announcement.node_name, node.announcement.node_id))
    names = Counter(node.announcement.mesh_name for node in members if node.announcement.mesh_name)
    rtts = [node.rtt for node in members if node.rtt is not None]
    return LanMesh(
        mesh_id=mesh_id,
        # Nodes may disagree (a rename on its way through the mesh): the name most of them give.
        mesh_name=min(names, key=lambda name: (-names[name], name)) if names else "",
        nodes=tuple(members),
        models=tuple(sorted({model for node in members for model in node.announcement.models})),
        models_total=max(node.announcement.models_total for node in members),
        memory_bytes=sum(node.announcement.memory_bytes for node in members),
        rtt=min(rtts) if rtts else None,
    )


def _reachable(advertised: Sequence[str]) -> list[tuple[str, int]]:
    """(ip, port) of the advertised addresses another machine on the LAN could dial."""
    found: list[tuple[str, int]] = []
    for address in advertised:
        try:
            host, port = addresses.split(address)
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue  # a host name (--advertise): an A record needs an address
        if not (is_loopback(host) or ip.is_unspecified or ip.is_multicast):
            found.append((host, port))
    return found


def _fitting(models: Sequence[str]) -> tuple[str, ...]:
    """The first models whose names fit MODELS_BYTES, comma-separated; a name a reader would refuse
    (a comma, an unprintable character) is left out, and counted in models_total all the same."""
    chosen: list[str] = []
    used = 0
    for model in models:
        size = len(model.encode()) + (1 if chosen else 0)
        if "," in model or not model.isprintable() or used + size > MODELS_BYTES:
            continue
        chosen.append(model)
        used += size
    return tuple(chosen)


def _cut(text: str, limit: int) -> str:
    """`text` cut to `limit` UTF-8 bytes without splitting a character, unprintable ones dropped."""
    printable = "".join(char for char in text if char.isprintable())
    return printable.encode()[:limit].decode(errors="ignore")


def _text(fields: Mapping[str, bytes | None], key: str, limit: int) -> str:
    raw = fields.get(key)
    if raw is None:
        raise BadAnnouncement(f"no {key}")
    if len(raw) > limit:
        raise BadAnnouncement(f"{key} longer than {limit} bytes")
    try:
        value = raw.decode()
    except UnicodeDecodeError:
        raise BadAnnouncement(f"{key} is not UTF-8") from None
    if not value.isprintable():
        # Printed on a terminal by `discover`: an escape sequence would be someone else's command.
        raise BadAnnouncement(f"{key} has unprintable characters")
    return value


def _number(fields: Mapping[str, bytes | None], key: str, limit: int) -> int:
    value = _text(fields, key, 20)
    if not value.isdigit() or not value.isascii() or int(value) > limit:
        raise BadAnnouncement(f"{key} is not a number up to {limit}")
    return int(value)

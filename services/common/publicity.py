"""A mesh's publicity (its name, region, client limit, and whether it is listed on Nostr): whose
flags set it, which copy each member holds, and which live member publishes the listing.

A member's flags (--mesh-name, --region, --max-clients, --publish) make it the publicity's origin.
Members started with none copy it from the mesh (gossip/adoption.py), so a listed mesh stays
listed after its origin disappears: one live member, the same for every view, publishes. A copy
is dropped once its origin is back without those settings (restarted without --publish).

Pure: records in, a decision out. The copying loop is gossip's, the publishing the gateway's.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.common.records import MeshView, NodeRecord, Publicity


def from_flags(node_id: str, mesh_name: str, region: str, max_clients: int, publish: bool) -> Publicity:
    """A node's own publicity from its flags: it is the origin when it was given any."""
    if not (mesh_name or region or max_clients or publish):
        return Publicity()
    return Publicity(mesh_name=mesh_name, region=region, max_clients=max_clients, publish=publish, origin=node_id)


def adopted(own: NodeRecord, others: Iterable[NodeRecord]) -> Publicity:
    """The publicity `own` should hold, given the records of the live members `others`.

    Its own flags' when it was given any. Otherwise the best copy the mesh holds (a listed one
    first, then the lowest origin), its current one among them: kept after its origin left. A copy
    whose origin is live but holds other settings is stale: every copy of a live origin is its own."""
    if own.publicity.origin == own.node_id:
        return own.publicity
    live = {record.node_id: record for record in others if record.node_id != own.node_id}

    def current(publicity: Publicity) -> bool:
        origin = publicity.origin
        return bool(origin) and origin != own.node_id and (origin not in live or live[origin].publicity == publicity)

    copies = [record.publicity for record in live.values() if current(record.publicity)]
    if current(own.publicity):
        copies.append(own.publicity)
    return min(copies, key=_preference) if copies else Publicity()


def publisher(view: MeshView) -> str:
    """The node id of the member that publishes the mesh's listing; "" when the mesh is not listed.

    A live origin of a listed publicity (the lowest id if several were given --publish), else the
    lowest id among the live members holding a listed copy: every member picks the same one."""
    members = [view.own, *(peer.record for peer in view.peers)]
    listed = [record for record in members if record.publicity.publish and record.node_id]
    origins = [record for record in listed if record.publicity.origin == record.node_id]
    return min(record.node_id for record in origins or listed) if listed else ""


def _preference(publicity: Publicity) -> tuple[bool, str, str, str, int]:
    return (not publicity.publish, publicity.origin, publicity.mesh_name, publicity.region, publicity.max_clients)

"""Keeps this node's copy of the mesh's publicity (name, region, listing) current with the mesh's.

Owns only the loop; which copy to hold is services/common/publicity.py's. It runs in gossip
because gossip owns this node's record: a node started without --publish or --mesh-name holds the
mesh's settings all the same, and publishes the listing when its turn comes (the gateway's).
"""

from __future__ import annotations

from services.common import publicity
from services.common.records import PeerStatus, SelfUpdate
from services.gossip.membership import Membership

LIVE = frozenset({PeerStatus.ALIVE, PeerStatus.SUSPECT})  # members whose copy counts: the dead's are gone with them


async def follow(membership: Membership) -> None:
    """Update our record's publicity whenever the mesh's changes; runs until cancelled."""
    while True:
        seen = membership.changes.version
        others = [member.record for member in membership.members.values() if member.status in LIVE]
        wanted = publicity.adopted(membership.own, others)
        if wanted != membership.own.publicity:
            await membership.update_self(SelfUpdate(frozenset({"publicity"}), {"publicity": wanted}))
        await membership.changes.wait_newer(seen)

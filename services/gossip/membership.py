"""The mesh picture this node holds: its own record (peers come with the mesh issue).

Owns the record and its version; changes go through records.apply_update. No grpc here.
"""

from __future__ import annotations

import time

from services.common.changes import Changes
from services.common.records import NodeRecord, SelfUpdate, apply_update


class Membership:
    def __init__(self, own: NodeRecord) -> None:
        self.own = own
        self.peers: dict[str, NodeRecord] = {}
        self.changes = Changes()

    async def update_self(self, update: SelfUpdate) -> NodeRecord:
        updated = apply_update(self.own, update, time.time())
        if updated is not self.own:
            self.own = updated
            await self.changes.publish()
        return self.own

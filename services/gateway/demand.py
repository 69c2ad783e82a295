"""Counting requests per model for the mesh's demand map: the gateway counts, gossip merges.

Counts are batched and sent to gossip's RecordDemand twice a second, off the request path. While
gossip is away (restarting) the batch waits for it (calls.call) and new counts gather for the next;
counts gossip did not take are kept for the next batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import grpc

from services.common import calls
from services.common.logs import event
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc

log = logging.getLogger(__name__)


class DemandReporter:
    def __init__(self, gossip: grpc.aio.Channel, interval: float = 0.5) -> None:
        self.stub: gossip_pb2_grpc.GossipAsyncStub = gossip_pb2_grpc.GossipStub(gossip)
        self.interval = interval
        self.pending: Counter[str] = Counter()
        self._wake = asyncio.Event()

    def count(self, model_id: str) -> None:
        self.pending[model_id] += 1
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.interval)
            self._wake.clear()
            batch, self.pending = self.pending, Counter()
            if not await self.send(batch):
                self.pending.update(batch)
                self._wake.set()

    async def send(self, batch: Counter[str]) -> bool:
        """Whether gossip took the batch; False (logged) if it stayed away past the deadline or refused it."""
        report = gossip_pb2.DemandReport(requests=dict(batch))
        try:
            await calls.call(lambda: self.stub.RecordDemand(report, timeout=5, wait_for_ready=True), "Gossip.RecordDemand")
        except grpc.aio.AioRpcError as failure:
            event(log, "demand report failed", logging.WARNING, code=failure.code().name)
            return False
        return True

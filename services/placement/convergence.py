"""The placement loop: plan, publish the plan to gossip, ask the runner to converge, and
report what the runner serves back into this node's record.

Owns no decisions (planner.py does) and no processes (the runner does).
"""

from __future__ import annotations

import logging

import grpc
import psutil

from services.common.logs import event
from services.common.records import Assignment, SelfUpdate
from services.common.records_proto import served_from_proto, update_to_proto
from services.placement import planner
from services.placement.settings import PlacementSettings
from services.proto.mesh.v1 import gossip_pb2_grpc, runner_pb2, runner_pb2_grpc
from services.runner.models import ModelRef, models_on_disk, resolve

log = logging.getLogger(__name__)


class Convergence:
    def __init__(self, settings: PlacementSettings, gossip: grpc.aio.Channel, runner: grpc.aio.Channel) -> None:
        self.settings = settings
        self.gossip = gossip_pb2_grpc.GossipStub(gossip)
        self.runner = runner_pb2_grpc.RunnerStub(runner)
        self.assignments: tuple[Assignment, ...] = ()
        self.models: list[ModelRef] = []
        self.dropped: set[str] = set()

    def memory_offered(self) -> int:
        if self.settings.client:
            return 0
        return self.settings.max_memory_bytes or psutil.virtual_memory().total

    async def run(self) -> None:
        self.models = [resolve(spec, self.settings.models_dir) for spec in self.settings.models]
        await self.apply(self.models)
        await self.report_served()

    async def drop(self, model_id: str) -> bool:
        """Stop serving a model here; False when this node does not serve it."""
        match = next((m.model_id for m in self.models if m.model_id.lower() == model_id.lower()), None)
        if match is None or match in self.dropped:
            return False
        self.dropped.add(match)
        await self.runner.Stop(runner_pb2.StopRequest(model_id=match), wait_for_ready=True)
        await self.apply(self.models)
        return True

    async def apply(self, models: list[ModelRef]) -> None:
        s = self.settings
        needs = [planner.ModelNeed(m.model_id, m.size_bytes) for m in models]
        self.assignments = planner.plan(needs, self.memory_offered(), s.headroom, s.context_bytes, frozenset(self.dropped))
        for assignment in self.assignments:
            event(log, "placement decided", model=assignment.model_id, mode=assignment.mode, reason=assignment.reason)
        await self._update_self(
            role="client" if s.client else planner.role_of(self.assignments), assignments=self.assignments,
            memory_offered_bytes=self.memory_offered(), models_on_disk=models_on_disk(s.models_dir, models),
        )
        paths = {m.model_id: m.path for m in models}
        for assignment in self.assignments:
            if assignment.mode == "solo":
                await self.runner.Serve(runner_pb2.ServeRequest(model_id=assignment.model_id, path=str(paths[assignment.model_id])), wait_for_ready=True)

    async def report_served(self) -> None:
        """Mirror the runner's model states into this node's gossip record, change by change."""
        async for states in self.runner.Watch(runner_pb2.ListRequest(), wait_for_ready=True):
            await self._update_self(served=tuple(served_from_proto(m) for m in states.models))

    async def _update_self(self, **values: object) -> None:
        update = SelfUpdate(fields=frozenset(values), values=values)
        await self.gossip.UpdateSelf(update_to_proto(update), wait_for_ready=True)

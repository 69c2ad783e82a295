"""gRPC adapter of placement: proto in, Convergence state, proto out. Nothing else."""

from __future__ import annotations

from services.common.errors import NotFound
from services.common.grpc_server import Context
from services.common.records_proto import assignment_to_proto
from services.placement.convergence import Convergence
from services.proto.mesh.v1 import placement_pb2, placement_pb2_grpc


class PlacementServicer(placement_pb2_grpc.PlacementServicer):
    def __init__(self, convergence: Convergence) -> None:
        self.convergence = convergence

    async def GetPlan(self, request: placement_pb2.GetPlanRequest, context: Context) -> placement_pb2.Plan:
        return self._plan()

    async def Drop(self, request: placement_pb2.DropRequest, context: Context) -> placement_pb2.Plan:
        if not await self.convergence.drop(request.model_id):
            raise NotFound(f"this node does not serve '{request.model_id}'")
        return self._plan()

    def _plan(self) -> placement_pb2.Plan:
        return placement_pb2.Plan(assignments=[assignment_to_proto(a) for a in self.convergence.assignments])

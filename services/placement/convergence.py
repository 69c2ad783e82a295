"""The placement loop: on every change of the mesh, decide (decide.py), publish the decision in
this node's record, and ask the runner to converge: solo llama-servers, rpc-servers for splits we
work for, and for splits we host, RPC tunnels (through the gateway) and llama-server with --rpc.

Owns no decisions and no processes; it mirrors the runner's states into the gossip record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import grpc
import psutil

from services.common.logs import event
from services.common.records import SERVING_MODES, Assignment, MeshView, Mode, NodeRecord, ProcessKind, ProcessState, Role, SelfUpdate
from services.common.records_proto import experts_from_proto, experts_to_proto, served_from_proto, update_to_proto, view_from_proto
from services.placement.decide import ModelAsk, MoEAsk, decide
from services.placement.memory import memory_needed
from services.placement.metrics import PlacementMetrics
from services.placement.promotion import Rules, promotions
from services.placement.settings import PlacementSettings
from services.placement.workers import late_workers
from services.proto.mesh.v1 import gateway_pb2, gateway_pb2_grpc, gossip_pb2, gossip_pb2_grpc, runner_pb2, runner_pb2_grpc
from services.runner.models import ModelError, ModelRef, model_files, models_on_disk, resolve

log = logging.getLogger(__name__)
MAX_EXCLUSION_SECONDS = 6 * 3600.0  # a worker left out again and again is still tried a few times a day


class Convergence:
    def __init__(self, settings: PlacementSettings, gossip: grpc.aio.Channel, runner: grpc.aio.Channel, gateway: grpc.aio.Channel) -> None:
        self.settings = settings
        self.gossip = gossip_pb2_grpc.GossipStub(gossip)
        self.runner = runner_pb2_grpc.RunnerStub(runner)
        self.gateway = gateway_pb2_grpc.GatewayStub(gateway)
        self.assignments: tuple[Assignment, ...] = ()
        self.models: list[ModelRef] = []
        self.asks: list[ModelAsk] = []
        self.dropped: set[str] = set()
        self.view: MeshView | None = None
        self.tunnels: dict[tuple[str, int], int] = {}  # (worker address, rpc port) -> local port
        self.on_disk: dict[str, ModelRef] = {}  # every model this node could serve
        self.promoted: dict[str, str] = {}  # model -> why this node serves it for demand
        self.pending: dict[str, float] = {}  # promotions waiting to settle: model -> first wanted (monotonic)
        self.facts: dict[str, runner_pb2.ModelFacts] = {}
        self.waiting: dict[tuple[str, str], float] = {}  # (model, worker) of our splits not coming up -> since (monotonic)
        self.excluded: dict[str, float] = {}  # workers left out of our split plans -> until (monotonic)
        self.strikes: dict[str, int] = {}  # times each worker was left out
        self.metrics = PlacementMetrics(lambda: self.assignments)
        self._lock = asyncio.Lock()

    def memory_offered(self) -> int:
        if self.settings.client:
            return 0
        return self.settings.max_memory_bytes or psutil.virtual_memory().total

    async def run(self) -> None:
        self.models = [resolve(spec, self.settings.models_dir) for spec in self.settings.models]
        held = models_on_disk(self.settings.models_dir, self.models)
        self.on_disk = {m.model_id: m for m in self.models}
        for name in held:
            try:
                self.on_disk.setdefault(name, resolve(name, self.settings.models_dir))
            except ModelError:
                continue
        if self.settings.standby:
            self.models = []  # held, not served: a standby serves only what demand asks of it
        self.asks = [await self._ask(m) for m in self.models]
        await self._update_self(
            role=Role.CLIENT if self.settings.client else Role.STANDBY,
            memory_offered_bytes=self.memory_offered(),
            models_on_disk=held if not self.settings.client else (),
            model_files=model_files(self.on_disk.values()) if not self.settings.client else (),
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(self.report_served())
            group.create_task(self.follow_mesh())
            group.create_task(self.look_again())

    async def follow_mesh(self) -> None:
        async for message in self.gossip.Watch(gossip_pb2.WatchRequest(), wait_for_ready=True):
            self.view = view_from_proto(message)
            await self.converge()

    async def drop(self, model_id: str) -> bool:
        """Stop serving a model here; False when this node does not serve it."""
        match = next((m for m in [*(m.model_id for m in self.models), *self.promoted] if m.lower() == model_id.lower()), None)
        if match is None or match in self.dropped:
            return False
        self.dropped.add(match)
        await self.converge()
        return True

    async def look_again(self) -> None:
        """Promotions wait `promote_settle` seconds, late workers `worker_start_bound` and left-out
        ones `worker_exclusion`, even when the mesh is quiet: look again when one is due."""
        while True:
            await asyncio.sleep(min(0.25, self.settings.promote_settle))
            if self.pending or self._due(time.monotonic()):
                await self.converge()

    def _due(self, now: float) -> bool:
        s = self.settings
        return any(now - since >= s.worker_start_bound for since in self.waiting.values()) or any(until <= now for until in self.excluded.values())

    def _exclusions(self, view: MeshView, now: float) -> frozenset[str]:
        """Workers left out of this node's split plans: late ones join, those whose time is up leave."""
        s = self.settings
        self.waiting, late = late_workers(view, self.assignments, self.waiting, now, s.worker_start_bound)
        for worker in sorted(late - set(self.excluded)):
            # Each time the same worker is late again it stays out twice as long (capped): a host that
            # serves solo meanwhile is not re-planned every few minutes around a worker that never comes.
            self.strikes[worker] = self.strikes.get(worker, 0) + 1
            exclusion = min(s.worker_exclusion * 2 ** (self.strikes[worker] - 1), MAX_EXCLUSION_SECONDS)
            event(log, "split worker left out", worker=worker, bound_seconds=s.worker_start_bound, for_seconds=exclusion)
            self.excluded[worker] = now + exclusion
        self.excluded = {worker: until for worker, until in self.excluded.items() if until > now}
        return frozenset(self.excluded)

    def _promote(self, view: MeshView) -> list[tuple[ModelRef, str]]:
        """The asks demand adds on this node: promotions kept, and new ones once they have settled."""
        s = self.settings
        needs = {name: memory_needed(ref.size_bytes, s.headroom, s.context_bytes) for name, ref in self.on_disk.items() if name not in self.dropped}
        wanted = promotions(view, needs, self.promoted, Rules(s.hot_ratio, s.hot_requests)) if not s.client else {}
        now = time.monotonic()
        self.pending = {model: self.pending.get(model, now) for model in wanted if model not in self.promoted}
        for model, since in list(self.pending.items()):
            if now - since >= s.promote_settle:
                event(log, "promoted", model=model, reason=wanted[model])
                self.metrics.promotions.labels(model).inc()
                del self.pending[model]
        for model in set(self.promoted) - set(wanted):
            event(log, "demotion", model=model, reason="no demand left for it (TTL passed)")
        self.promoted = {model: reason for model, reason in wanted.items() if model not in self.pending}
        return [(self.on_disk[model], reason) for model, reason in self.promoted.items()]

    async def _ask(self, ref: ModelRef, promoted: str = "") -> ModelAsk:
        """The model as placement plans it; the runner reads the file once (layers, experts, ranking)."""
        if ref.model_id not in self.facts:
            self.facts[ref.model_id] = await self.runner.Inspect(runner_pb2.InspectRequest(path=str(ref.path)), wait_for_ready=True)
        f = self.facts[ref.model_id]
        moe = None
        if f.experts > 1:
            moe = MoEAsk(f.experts, f.experts_used, f.expert_bytes, f.trunk_bytes, experts_from_proto(f.ranking), self.settings.moe_floor)
        return ModelAsk(ref.model_id, ref.size_bytes, f.layers, promoted, moe, ref.fingerprint)

    async def converge(self) -> None:
        if self.view is None:
            return
        async with self._lock:
            s = self.settings
            asks = [*self.asks, *[await self._ask(ref, reason) for ref, reason in self._promote(self.view)]]
            assignments = decide(
                self.view,
                asks,
                self.memory_offered(),
                force_split=s.split,
                headroom=s.headroom,
                context_bytes=s.context_bytes,
                dropped=frozenset(self.dropped),
                held=frozenset() if s.client else frozenset(self.on_disk),
                excluded=self._exclusions(self.view, time.monotonic()),
            )
            gone = {a.model_id for a in self.assignments} - {a.model_id for a in assignments}
            if assignments != self.assignments:
                for assignment in assignments:
                    event(log, "placement decided", model=assignment.model_id, mode=assignment.mode, reason=assignment.reason)
                self.metrics.changed(self.assignments, assignments)
                self.assignments = assignments
                role = Role.CLIENT if s.client else (Role.SERVING if any(a.mode in SERVING_MODES for a in assignments) else Role.STANDBY)
                await self._update_self(role=role, assignments=assignments)
            for model_id in gone:
                await self._stop(model_id, ProcessKind.LLAMA_SERVER)
                await self._stop(model_id, ProcessKind.RPC_SERVER)
            for assignment in assignments:
                await self._apply(assignment)

    async def _apply(self, assignment: Assignment) -> None:
        path = str(self.on_disk[assignment.model_id].path)
        model_id = assignment.model_id
        if assignment.mode == Mode.SOLO:
            await self._stop(model_id, ProcessKind.RPC_SERVER)
            await self.runner.Serve(runner_pb2.ServeRequest(model_id=model_id, path=path), wait_for_ready=True)
        elif assignment.mode == Mode.SPLIT_WORKER:
            await self._stop(model_id, ProcessKind.LLAMA_SERVER)
            index = assignment.workers.index(self.view.own.node_id) if self.view else 0
            await self.runner.ServeRpc(
                runner_pb2.ServeRpcRequest(model_id=model_id, path=path, layers=assignment.layers, worker_index=index), wait_for_ready=True
            )
        elif assignment.mode == Mode.MOE_SHARD:
            await self._stop(model_id, ProcessKind.RPC_SERVER)
            experts = assignment.experts_of(self.view.own.node_id) if self.view else ()
            await self.runner.Serve(runner_pb2.ServeRequest(model_id=model_id, path=path, shard=experts_to_proto(experts)), wait_for_ready=True)
        elif assignment.mode == Mode.SPLIT_HOST:
            await self._stop(model_id, ProcessKind.RPC_SERVER)
            await self._host(assignment, path)
        else:
            await self._stop(model_id, ProcessKind.LLAMA_SERVER)
            await self._stop(model_id, ProcessKind.RPC_SERVER)

    async def _host(self, assignment: Assignment, path: str) -> None:
        """Start llama-server with --rpc once every worker's rpc-server is ready (else wait for gossip)."""
        assert self.view is not None
        records = {peer.record.node_id: (peer.record, peer.address) for peer in self.view.peers if peer.status == "alive"}
        endpoints = []
        for worker in assignment.workers:
            if worker not in records:
                return
            record, address = records[worker]
            port = _ready_rpc_port(record, assignment.model_id)
            if not port:
                return
            if (address, port) not in self.tunnels:
                tunnel = await self.gateway.OpenRpcTunnel(gateway_pb2.RpcTunnelRequest(address=address, port=port), wait_for_ready=True)
                self.tunnels[(address, port)] = tunnel.local_port
            endpoints.append(f"127.0.0.1:{self.tunnels[(address, port)]}")
        worker_layers = sum(assignment.layers[1:])
        await self.runner.Serve(
            runner_pb2.ServeRequest(
                model_id=assignment.model_id,
                path=path,
                rpc_endpoints=endpoints,
                worker_layers=worker_layers,
                tensor_split=[float(n) for n in assignment.layers[1:]],
            ),
            wait_for_ready=True,
        )

    async def _stop(self, model_id: str, kind: str) -> None:
        await self.runner.Stop(runner_pb2.StopRequest(model_id=model_id, kind=kind), wait_for_ready=True)

    async def report_served(self) -> None:
        """Mirror the runner's model states into this node's gossip record, change by change."""
        async for states in self.runner.Watch(runner_pb2.ListRequest(), wait_for_ready=True):
            # Each served model carries the fingerprint of the file it came from (a shard's source).
            await self._update_self(served=tuple(replace(served_from_proto(m), fingerprint=self._fingerprint(m.model_id)) for m in states.models))

    def _fingerprint(self, model_id: str) -> str:
        ref = self.on_disk.get(model_id)
        return ref.fingerprint if ref is not None else ""

    async def _update_self(self, **values: object) -> None:
        update = SelfUpdate(fields=frozenset(values), values=values)
        await self.gossip.UpdateSelf(update_to_proto(update), wait_for_ready=True)


def _ready_rpc_port(record: NodeRecord, model_id: str) -> int:
    return next((s.port for s in record.served if s.model_id == model_id and s.kind == ProcessKind.RPC_SERVER and s.state == ProcessState.READY), 0)

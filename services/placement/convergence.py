"""The placement loop: gathers the facts, runs plan() on every change, and has the executor perform
the difference. Changes are gossip's mesh view, the runner's report of what it runs, a clock due
(a promotion settling, a late worker), and `mesh-llm drop`.

Both streams are followed through services/common/calls.py: a sibling restarting is routine. Gossip
back with an empty record of this node gets the whole record again (plan.record_changes); a runner
back with nothing running is asked for every process again (processes.py).

Owns the loop's state (one Facts, replaced each round) and no decisions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import psutil

from services.common import calls
from services.common import devices as accelerators
from services.common.logs import event
from services.common.records import Assignment, Device, DownloadPolicy, DownloadState, MeshView
from services.common.records_proto import devices_from_proto, downloads_from_proto, served_from_proto, view_from_proto
from services.placement.actions import Event, Note
from services.placement.drafts import drafts
from services.placement.executor import Executor
from services.placement.facts import Facts, LocalModel
from services.placement.metrics import PlacementMetrics
from services.placement.plan import droppable, due, plan
from services.placement.settings import PlacementSettings
from services.proto.mesh.v1 import gateway_pb2_grpc, gossip_pb2, gossip_pb2_grpc, runner_pb2, runner_pb2_grpc

log = logging.getLogger(__name__)


def memory_offered(settings: PlacementSettings, devices: tuple[Device, ...] = ()) -> int:
    """What this node offers the mesh: nothing on a client; --max-vram when given; else the memory of
    the devices its llama-server uses (the runner lists them), else its RAM (a CPU build, or until
    the runner answered)."""
    if settings.client:
        return 0
    return settings.max_memory_bytes or accelerators.memory_offered(devices, psutil.virtual_memory().total)


class Convergence:
    def __init__(
        self,
        settings: PlacementSettings,
        gossip: gossip_pb2_grpc.GossipAsyncStub,
        runner: runner_pb2_grpc.RunnerAsyncStub,
        gateway: gateway_pb2_grpc.GatewayAsyncStub,
        split_secret: bytes = b"",
    ) -> None:
        self.settings = settings
        self.gossip = gossip
        self.runner = runner
        self.executor = Executor(runner, gossip, gateway)
        self.facts = Facts(settings, memory_offered(settings), split_secret=split_secret)
        self.view: MeshView | None = None  # gossip's last word; None until it spoke
        self.metrics = PlacementMetrics(lambda: self.assignments)
        self._lock = asyncio.Lock()  # one round at a time: each starts from the last one's facts

    @property
    def assignments(self) -> tuple[Assignment, ...]:
        return self.facts.memory.assignments

    async def run(self) -> None:
        self.facts = await self.held_models()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.follow_runner())
            group.create_task(self.follow_mesh())
            group.create_task(self.look_again())

    async def held_models(self) -> Facts:
        """The facts with the models this node holds, as the runner finds them on disk, and its
        devices with the memory they offer (a client holds none); a model named by --model that is
        on the Hub but not on disk is fetched."""
        s = self.settings
        if s.client:
            return self.facts
        # The draft (--draft) is found like a model: asked for last, after the models.
        request = runner_pb2.ModelsRequest(specs=[*s.models, *([s.draft] if s.draft else [])], models_dir=str(s.models_dir))
        # A spec naming no GGUF is NOT_FOUND: placement stops with the runner's line (the CLI checked first).
        reply = await calls.call(lambda: self.runner.Models(request, wait_for_ready=True), "Models")
        await self.fetch([spec for spec, ref in zip(s.models, reply.named, strict=False) if ref.absent])
        named = [local_from_proto(ref) for ref in reply.named[: len(s.models)] if not ref.absent]
        chosen = local_from_proto(reply.named[-1]) if s.draft else None
        on_disk = {ref.model_id: local_from_proto(ref) for ref in reply.on_disk}
        on_hub = {ref.model_id: local_from_proto(ref) for ref in reply.on_hub}
        # A standby only holds what --model names: it serves what demand asks of it (promotion.py).
        asked = () if s.standby else tuple(model.model_id for model in named)
        found = drafts(on_disk, [model.model_id for model in named], chosen, s.catalog_drafts)
        devices = devices_from_proto(reply.devices)
        return replace(
            self.facts,
            asked=asked,
            on_disk=on_disk,
            on_hub=on_hub,
            drafts=found,
            devices=devices,
            memory_offered=memory_offered(s, devices),
            rpc_tls=reply.rpc_tls,
        )

    async def fetch(self, specs: list[str]) -> None:
        """Ask the runner to download the models named by --model that are not on disk (it serves
        them once they are: follow_runner looks again). --download never: the user fetches them."""
        for spec in specs:
            if self.settings.download == DownloadPolicy.NEVER:
                event(log, "model not on disk", logging.WARNING, spec=spec, reason="--download never: mesh-llm download fetches it")
                continue
            request = runner_pb2.FetchRequest(spec=spec, models_dir=str(self.settings.models_dir))
            await calls.call(lambda request=request: self.runner.Fetch(request, wait_for_ready=True), "Fetch")

    async def follow_mesh(self) -> None:
        async for message in calls.follow(lambda: self.gossip.Watch(gossip_pb2.WatchRequest(), wait_for_ready=True), "gossip Watch"):
            self.view = view_from_proto(message)
            await self.converge()

    async def follow_runner(self) -> None:
        """What the runner runs: mirrored into this node's record, and compared with the plan."""
        async for states in calls.follow(lambda: self.runner.Watch(runner_pb2.ListRequest(), wait_for_ready=True), "runner Watch"):
            running = tuple(served_from_proto(model) for model in states.models)
            downloads = downloads_from_proto(states.downloads)
            # The devices' memory in use, read again while the node runs (a client offers none).
            devices = devices_from_proto(states.devices) if states.devices and not self.settings.client else self.facts.devices
            arrived = {d.model_id for d in downloads if d.state == DownloadState.DONE} - {
                d.model_id for d in self.facts.downloads if d.state == DownloadState.DONE
            }
            # A download done: the model is on disk now, and served as if it had been there at start.
            held = await self.held_models() if arrived else self.facts
            async with self._lock:
                self.facts = replace(
                    self.facts,
                    running=running,
                    downloads=downloads,
                    asked=held.asked,
                    on_disk=held.on_disk,
                    on_hub=held.on_hub,
                    drafts=held.drafts,
                    devices=devices,
                )
                await self._converge()

    async def look_again(self) -> None:
        """Promotions wait `promote_settle` seconds, late workers `worker_start_bound` and left-out
        ones `worker_exclusion`, even when the mesh is quiet: look again when one is due."""
        while True:
            await asyncio.sleep(min(0.25, self.settings.promote_settle))
            if due(self.facts, time.monotonic()):
                await self.converge()

    async def drop(self, model_id: str) -> bool:
        """Stop serving a model here; False when this node does not serve it."""
        async with self._lock:
            match = droppable(self.facts, model_id)
            if match is None:
                return False
            self.facts = replace(self.facts, dropped=self.facts.dropped | {match})
            await self._converge()
            return True

    async def converge(self) -> None:
        async with self._lock:
            await self._converge()

    async def _converge(self) -> None:
        """Plan, perform; plan again while the actions taught the plan something (a model read, a tunnel's port)."""
        if self.view is None:
            return
        while True:
            before = self.facts
            result = plan(self.view, before, time.monotonic())
            self._tell(before.memory.assignments, result.memory.assignments, result.notes)
            self.facts = await self.executor.perform(replace(before, memory=result.memory), result.actions)
            if (self.facts.inspections, self.facts.tunnels) == (before.inspections, before.tunnels):
                return

    def _tell(self, before: tuple[Assignment, ...], after: tuple[Assignment, ...], notes: tuple[Note, ...]) -> None:
        for note in notes:
            event(log, note.event, logging.INFO, **note.fields)
            if note.event == Event.PROMOTED:
                self.metrics.promotions.labels(note.fields["model"]).inc()
        if after != before:
            self.metrics.changed(before, after)


def local_from_proto(ref: runner_pb2.ModelRef) -> LocalModel:
    return LocalModel(ref.model_id, ref.path, ref.size_bytes, ref.fingerprint, ref.source, ref.catalog)

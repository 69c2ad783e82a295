"""The placement loop against fake siblings that record every call: a mesh change that alters
nothing sends the runner nothing; gossip or the runner restarting is ridden out (the record is
published again whole, what ran is served again); a refusal does not end placement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import grpc
import psutil
import pytest

from services.common.changes import Changes
from services.common.records import Device, ModelFile, NodeRecord, ProcessKind, ProcessState, Role, ServedModel, apply_update
from services.common.records_proto import devices_to_proto, record_to_proto, served_to_proto, update_from_proto
from services.placement.convergence import Convergence, memory_offered
from services.placement.memory import GIB
from services.placement.settings import PlacementSettings
from services.proto.mesh.v1 import gateway_pb2, gossip_pb2, node_pb2, runner_pb2

PATH = "/models/m.gguf"
H200 = Device("CUDA0", "NVIDIA H200", 140 * GIB, 139 * GIB)


def failure(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


class Sibling:
    """A service whose Watch stream sends its state on open and on every change, and which can
    restart: the open stream is cut (UNAVAILABLE) and its state starts over."""

    def __init__(self) -> None:
        self.changes = Changes()
        self.generation = 0

    async def stream(self, snapshot: Callable[[], object]) -> AsyncIterator[object]:
        generation, seen = self.generation, -1
        while True:
            seen = await self.changes.wait_newer(seen)
            if generation != self.generation:
                raise failure(grpc.StatusCode.UNAVAILABLE)
            yield snapshot()

    async def restarted(self) -> None:
        self.generation += 1
        await self.changes.publish()


class FakeGossip(Sibling):
    def __init__(self) -> None:
        super().__init__()
        self.own = NodeRecord("a", "a")
        self.rounds = 0
        self.updates: list[frozenset[str]] = []

    def Watch(self, request: gossip_pb2.WatchRequest, wait_for_ready: bool = False) -> AsyncIterator[object]:
        return self.stream(lambda: gossip_pb2.MeshView(self=record_to_proto(self.own), gossip_rounds=self.rounds))

    async def UpdateSelf(self, request: gossip_pb2.SelfUpdate, wait_for_ready: bool = False) -> node_pb2.NodeRecord:
        update = update_from_proto(request)
        self.updates.append(update.fields)
        changed = apply_update(self.own, update, 0.0)
        if changed != self.own:
            self.own = changed
            await self.changes.publish()
        return record_to_proto(self.own)

    async def gossip_round(self) -> None:
        """A change of the mesh that alters nothing placement looks at."""
        self.rounds += 1
        await self.changes.publish()

    async def restart(self) -> None:
        self.own = NodeRecord("a", "a")  # a gossip service starts with an empty record of its node
        await self.restarted()


class FakeRunner(Sibling):
    def __init__(self, refuse: grpc.StatusCode | None = None, devices: tuple[Device, ...] = ()) -> None:
        super().__init__()
        self.running: dict[tuple[str, str], ServedModel] = {}
        self.calls: list[str] = []
        self.refuse = refuse
        self.devices = devices

    def Watch(self, request: runner_pb2.ListRequest, wait_for_ready: bool = False) -> AsyncIterator[object]:
        return self.stream(lambda: runner_pb2.ModelStates(models=[served_to_proto(s) for _, s in sorted(self.running.items())]))

    async def Models(self, request: runner_pb2.ModelsRequest, wait_for_ready: bool = False) -> runner_pb2.ModelsReply:
        if list(request.specs) != ["m"]:
            raise failure(grpc.StatusCode.NOT_FOUND)
        ref = runner_pb2.ModelRef(model_id="m", path=PATH, size_bytes=GIB, fingerprint="fp-m")
        return runner_pb2.ModelsReply(named=[ref], on_disk=[ref], devices=devices_to_proto(self.devices))

    async def Inspect(self, request: runner_pb2.InspectRequest, wait_for_ready: bool = False) -> runner_pb2.ModelFacts:
        self.calls.append("Inspect")
        return runner_pb2.ModelFacts(layers=30, size_bytes=GIB)

    async def Serve(self, request: runner_pb2.ServeRequest, wait_for_ready: bool = False) -> node_pb2.ServedModel:
        self.calls.append(f"Serve {request.model_id}")
        if self.refuse is not None:
            raise failure(self.refuse)
        served = ServedModel(request.model_id, request.path, ProcessState.READY, 8000)
        if self.running.get((request.model_id, ProcessKind.LLAMA_SERVER)) != served:
            self.running[(request.model_id, ProcessKind.LLAMA_SERVER)] = served
            await self.changes.publish()
        return served_to_proto(served)

    async def Stop(self, request: runner_pb2.StopRequest, wait_for_ready: bool = False) -> runner_pb2.StopResponse:
        self.calls.append(f"Stop {request.model_id} {request.kind}")
        stopped = self.running.pop((request.model_id, request.kind), None) is not None
        await self.changes.publish()
        return runner_pb2.StopResponse(stopped=stopped)

    async def restart(self) -> None:
        self.running.clear()  # a runner starts with nothing running
        await self.restarted()


class FakeGateway:
    async def OpenRpcTunnel(self, request: gateway_pb2.RpcTunnelRequest, wait_for_ready: bool = False) -> gateway_pb2.RpcTunnel:
        return gateway_pb2.RpcTunnel(local_port=4000)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def settings(**fields) -> PlacementSettings:
    return PlacementSettings(models=fields.pop("models", ["m"]), max_memory_bytes=fields.pop("max_memory_bytes", 4 * GIB), **fields)


async def started(gossip: FakeGossip, runner: FakeRunner, **fields) -> tuple[Convergence, asyncio.Task[None]]:
    """A node that asked its runner to serve m (and, unless it refuses, serves it: its record says so)."""
    convergence = Convergence(settings(**fields), gossip, runner, FakeGateway())
    task = asyncio.create_task(convergence.run())
    await until(lambda: "Serve m" in runner.calls and (runner.refuse is not None or any(s.state == ProcessState.READY for s in gossip.own.served)))
    return convergence, task


async def settled(convergence: Convergence, gossip: FakeGossip) -> None:
    """Every view gossip sent has been planned for (a round waits for the one in progress)."""
    await until(lambda: convergence.view is not None and convergence.view.gossip_rounds == gossip.rounds)
    await convergence.converge()


def test_a_mesh_change_that_alters_nothing_sends_the_runner_nothing() -> None:
    async def scenario() -> None:
        gossip, runner = FakeGossip(), FakeRunner()
        convergence, task = await started(gossip, runner)
        assert runner.calls == ["Inspect", "Serve m"]
        for _ in range(3):
            await gossip.gossip_round()
            await settled(convergence, gossip)
        assert runner.calls == ["Inspect", "Serve m"]
        # The fake records what a change that alters something sends: drop stops m.
        assert await convergence.drop("M")
        assert runner.calls[2:] == ["Stop m llama-server"]
        task.cancel()

    asyncio.run(scenario())


def test_gossip_restarting_gets_the_whole_record_again() -> None:
    async def scenario() -> None:
        gossip, runner = FakeGossip(), FakeRunner()
        convergence, task = await started(gossip, runner)
        before = gossip.own
        assert before.role == Role.SERVING and before.models_on_disk == ("m",) and before.model_files == (ModelFile("m", "fp-m"),)
        await gossip.restart()
        await until(lambda: gossip.own.served == before.served and gossip.own.assignments == before.assignments)
        assert replace(gossip.own, version=0, updated_at=0.0) == replace(before, version=0, updated_at=0.0)
        assert runner.calls == ["Inspect", "Serve m"] and not task.done()
        task.cancel()

    asyncio.run(scenario())


def test_a_restarted_runner_is_asked_to_serve_again() -> None:
    async def scenario() -> None:
        gossip, runner = FakeGossip(), FakeRunner()
        _, task = await started(gossip, runner)
        await runner.restart()
        await until(lambda: runner.calls.count("Serve m") == 2 and bool(gossip.own.served))
        assert runner.running[("m", ProcessKind.LLAMA_SERVER)].state == ProcessState.READY and not task.done()
        task.cancel()

    asyncio.run(scenario())


def test_a_refused_serve_is_logged_and_placement_goes_on() -> None:
    async def scenario() -> None:
        gossip, runner = FakeGossip(), FakeRunner(refuse=grpc.StatusCode.FAILED_PRECONDITION)
        convergence, task = await started(gossip, runner)
        await gossip.gossip_round()
        await settled(convergence, gossip)
        assert runner.calls.count("Serve m") >= 2 and not task.done()  # asked again on the next change
        task.cancel()

    asyncio.run(scenario())


def test_a_model_the_runner_cannot_find_stops_placement_with_its_answer() -> None:
    async def scenario() -> None:
        convergence = Convergence(settings(models=["nowhere"]), FakeGossip(), FakeRunner(), FakeGateway())
        await convergence.run()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(scenario())
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("fields", "devices", "offered"),
    [
        ({}, (H200,), 140 * GIB),  # a GPU llama.cpp can use: its memory, whatever the RAM
        ({}, (H200, replace(H200, name="CUDA1")), 280 * GIB),  # llama.cpp spreads a model over every card
        ({"max_memory_bytes": 4 * GIB}, (H200,), 4 * GIB),  # --max-vram wins
        ({"client": True}, (H200,), 0),  # a client offers nothing
        ({}, (), psutil.virtual_memory().total),  # a CPU build: the RAM
    ],
)
def test_a_node_offers_its_gpus_memory_unless_told_otherwise(fields: dict[str, object], devices: tuple[Device, ...], offered: int) -> None:
    assert memory_offered(PlacementSettings.model_validate(fields), devices) == offered


def test_the_runners_devices_go_into_the_record_with_the_memory_they_offer() -> None:
    async def scenario() -> None:
        gossip, runner = FakeGossip(), FakeRunner(devices=(H200,))
        convergence, task = await started(gossip, runner, max_memory_bytes=0)
        assert gossip.own.devices == (H200,) and gossip.own.memory_offered_bytes == 140 * GIB
        assert convergence.facts.memory_offered == 140 * GIB
        task.cancel()

    asyncio.run(scenario())

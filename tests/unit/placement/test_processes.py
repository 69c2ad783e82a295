"""What a split asks of the runners: the host's llama-server and the workers' rpc-servers agree on
which blocks run where (a GPU host runs after its workers, a CPU host before them)."""

from __future__ import annotations

import pytest

from services.common.records import Assignment, Device, MeshView, Mode, NodeRecord, Peer, ProcessKind, ProcessState, ServedModel
from services.placement.facts import LlamaRequest, LocalModel, RpcRequest
from services.placement.processes import wanted

GIB = 1024**3
GPU = (Device("CUDA0", "NVIDIA H100 80GB HBM3", 80 * GIB, 79 * GIB),)
MODEL = LocalModel("M", "/models/m.gguf", 8 * GIB)


def split(mode: Mode) -> Assignment:
    return Assignment("M", mode, "too big", host="h", workers=("w",), layers=(20, 12))


def record(node_id: str, devices: tuple[Device, ...] = (), served: tuple[ServedModel, ...] = ()) -> NodeRecord:
    return NodeRecord(node_id, node_id, devices=devices, served=served)


@pytest.mark.parametrize(("devices", "host_last"), [(GPU, True), ((), False)])
def test_a_worker_holds_the_first_blocks_behind_a_gpu_host_and_the_last_behind_a_cpu_one(devices, host_last) -> None:
    view = MeshView(own=record("w"), peers=(Peer(record("h", devices), "10.0.0.1:7000", "alive"),))
    request = wanted(view, {}, split(Mode.SPLIT_WORKER), MODEL).request
    assert isinstance(request, RpcRequest)
    assert (request.layers, request.worker_index, request.host_last) == ((20, 12), 0, host_last)


@pytest.mark.parametrize(("devices", "host_last"), [(GPU, True), ((), False)])
def test_the_host_runs_after_its_workers_on_its_own_gpu(devices, host_last) -> None:
    rpc = ServedModel("M", "/models/m.gguf", ProcessState.READY, port=50052, kind=ProcessKind.RPC_SERVER)
    view = MeshView(own=record("h", devices), peers=(Peer(record("w", served=(rpc,)), "10.0.0.2:7000", "alive"),))
    request = wanted(view, {("10.0.0.2:7000", 50052): "127.0.0.1:40001"}, split(Mode.SPLIT_HOST), MODEL).request
    assert isinstance(request, LlamaRequest)
    assert (request.rpc_endpoints, request.worker_layers, request.tensor_split, request.host_last) == (("127.0.0.1:40001",), 12, (12.0,), host_last)


def test_a_worker_that_does_not_see_its_host_keeps_its_rpc_server_as_it_is() -> None:
    needs = wanted(MeshView(own=record("w")), {}, split(Mode.SPLIT_WORKER), MODEL)
    assert needs.request is None and needs.kept == ("M", ProcessKind.RPC_SERVER)


def test_a_workers_blocks_are_dealt_over_each_of_its_gpus() -> None:
    rpc = ServedModel("M", "/models/m.gguf", ProcessState.READY, port=50052, kind=ProcessKind.RPC_SERVER)
    two = (Device("CUDA0", "card", 24 * GIB, 24 * GIB), Device("CUDA1", "card", 48 * GIB, 48 * GIB))
    view = MeshView(own=record("h", GPU), peers=(Peer(record("w", two, served=(rpc,)), "10.0.0.2:7000", "alive"),))
    request = wanted(view, {("10.0.0.2:7000", 50052): "127.0.0.1:40001"}, split(Mode.SPLIT_HOST), MODEL).request
    assert isinstance(request, LlamaRequest)
    assert (request.worker_layers, request.tensor_split) == (12, (4.0, 8.0))


def test_a_device_without_memory_is_no_gpu() -> None:
    blas = (Device("BLAS", "Accelerate", 0, 0),)
    view = MeshView(own=record("w"), peers=(Peer(record("h", blas), "10.0.0.1:7000", "alive"),))
    request = wanted(view, {}, split(Mode.SPLIT_WORKER), MODEL).request
    assert isinstance(request, RpcRequest) and not request.host_last

"""gRPC adapter of the runner: proto in, LlamaServers call, proto out. Nothing else."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from services.common import devices as accelerators
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.grpc_server import Context
from services.common.records import Device, ProcessKind
from services.common.records_proto import devices_to_proto, downloads_to_proto, experts_from_proto, experts_to_proto
from services.common.records_proto import served_to_proto as to_proto
from services.proto.mesh.v1 import node_pb2, runner_pb2, runner_pb2_grpc
from services.runner import rpc_tls
from services.runner.binaries import BinaryMissing
from services.runner.fetching import Fetches, NotAHubModel
from services.runner.hub_files import DownloadError
from services.runner.inventory import take_inventory
from services.runner.models import ModelError, ModelRef
from services.runner.servers import LLAMA_SERVER, HubLayers, LlamaServers, Split

if TYPE_CHECKING:
    from services.runner.server import DevicesInUse


def existing(path: str) -> Path:
    """The model file a request names; NOT_FOUND to the caller if it is not there."""
    model = Path(path)
    if not model.is_file():
        raise NotFound(f"{model} does not exist")
    return model


class RunnerServicer(runner_pb2_grpc.RunnerServicer):
    def __init__(self, servers: LlamaServers, fetches: Fetches, devices: asyncio.Future[tuple[Device, ...]], in_use: DevicesInUse | None = None) -> None:
        self.servers = servers
        self.fetches = fetches
        self.devices = devices  # listed once at start (server.accelerators); every Models reply carries them
        self.in_use = in_use  # their memory in use since (server.DevicesInUse): every Watch snapshot carries it
        self.rpc_tls = servers.settings.rpc_tls and rpc_tls.available(os.environ)  # TLS in RPC: Models replies say so

    async def Serve(self, request: runner_pb2.ServeRequest, context: Context) -> node_pb2.ServedModel:
        path = existing(request.path)
        split = Split(tuple(request.rpc_endpoints), request.worker_layers, tuple(request.tensor_split), self.rpc_key(request.rpc_key), request.host_last)
        draft = existing(request.draft_path) if request.draft_path else None
        memory = await self.memory_offered()
        try:
            if split.rpc_endpoints:
                split = replace(split, hashes=await asyncio.to_thread(self.servers.hash_list, path, split))
            if split.host_last:
                # A GPU host deals its blocks over its GPUs by their memory; its draft runs there too.
                local = [device for device in await asyncio.shield(self.devices) if device.total_bytes > 0]  # llama.cpp's GPUs, not BLAS
                names = ",".join(device.name for device in local) if draft is not None else ""
                split = replace(split, host_weights=tuple(device.total_bytes for device in local), draft_device=names)
            if request.shard:
                return to_proto(await self.servers.serve_shard(request.model_id, path, experts_from_proto(request.shard), draft, memory))
            return to_proto(self.servers.serve(request.model_id, path, split, draft, memory))
        except BinaryMissing as missing:
            raise FailedPrecondition(str(missing)) from missing
        except ModelError as bad:
            raise InvalidArgument(str(bad)) from bad

    def rpc_key(self, key: str) -> str:
        """A split's TLS key as asked for: 64 hex digits, and only where this node speaks TLS (it
        said so in its Models reply); "" for plain RPC."""
        if not key:
            return ""
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise InvalidArgument("rpc_key must be 64 lowercase hex digits (a 32-byte key)")
        if not self.rpc_tls:
            raise FailedPrecondition("this node's RPC cannot speak TLS (no libssl 3, or MESH_RUNNER_RPC_TLS=false): its splits use plain RPC")
        return key

    async def memory_offered(self) -> int:
        """What this node offers, as placement reckons it: --max-vram, else its devices' memory, else its RAM."""
        if self.servers.settings.max_memory_bytes:
            return self.servers.settings.max_memory_bytes
        return accelerators.memory_offered(await asyncio.shield(self.devices), psutil.virtual_memory().total)

    async def ServeRpc(self, request: runner_pb2.ServeRpcRequest, context: Context) -> node_pb2.ServedModel:
        layers = tuple(request.layers)
        try:
            if not request.path and request.source:
                # No copy of the model here: its layers come from the Hub (layer_fetch.py).
                fetched = HubLayers(request.source, Path(request.models_dir), request.fingerprint)
                return to_proto(
                    await self.servers.serve_rpc_fetched(
                        request.model_id, fetched, layers, request.worker_index, self.rpc_key(request.rpc_key), request.host_last
                    )
                )
            return to_proto(
                await self.servers.serve_rpc(
                    request.model_id, existing(request.path), layers, request.worker_index, self.rpc_key(request.rpc_key), request.host_last
                )
            )
        except BinaryMissing as missing:
            raise FailedPrecondition(str(missing)) from missing
        except DownloadError as failed:
            # The layers could not be fetched (the Hub away, another file there): the next round asks again.
            raise FailedPrecondition(str(failed)) from failed

    async def Stop(self, request: runner_pb2.StopRequest, context: Context) -> runner_pb2.StopResponse:
        return runner_pb2.StopResponse(stopped=await self.servers.stop(request.model_id, ProcessKind(request.kind or LLAMA_SERVER)))

    async def List(self, request: runner_pb2.ListRequest, context: Context) -> runner_pb2.ModelStates:
        return self._snapshot()

    async def Watch(self, request: runner_pb2.ListRequest, context: Context) -> AsyncIterator[runner_pb2.ModelStates]:
        seen = -1
        while True:
            seen = await self.servers.changes.wait_newer(seen)
            yield self._snapshot()

    def _snapshot(self) -> runner_pb2.ModelStates:
        return runner_pb2.ModelStates(
            models=[to_proto(state) for state in self.servers.states()],
            downloads=downloads_to_proto(self.fetches.states()),
            devices=devices_to_proto(self.in_use.current if self.in_use is not None else ()),
        )

    async def Inspect(self, request: runner_pb2.InspectRequest, context: Context) -> runner_pb2.ModelFacts:
        facts = await self.servers.inspect(existing(request.path))
        reply = runner_pb2.ModelFacts(layers=facts.layers, size_bytes=facts.size_bytes)
        if facts.moe is not None and facts.ranking is not None:
            reply.experts, reply.experts_used = facts.moe.experts, facts.moe.experts_used
            reply.expert_bytes, reply.trunk_bytes = facts.expert_bytes, facts.trunk_bytes
            reply.ranking.extend(experts_to_proto(facts.ranking.order))
            reply.ranking_source = facts.ranking.source
        return reply

    async def Models(self, request: runner_pb2.ModelsRequest, context: Context) -> runner_pb2.ModelsReply:
        try:
            # Fingerprinting reads every file: off the event loop.
            inventory = await asyncio.to_thread(take_inventory, tuple(request.specs), Path(request.models_dir))
        except ModelError as bad:
            raise NotFound(str(bad)) from bad
        return runner_pb2.ModelsReply(
            named=[ref_to_proto(ref) for ref in inventory.named],
            on_disk=[ref_to_proto(ref) for ref in inventory.on_disk],
            on_hub=[ref_to_proto(ref) for ref in inventory.on_hub],
            # Shielded: a caller gone mid-wait must not cancel the one listing every reply shares.
            devices=devices_to_proto(await asyncio.shield(self.devices)),
            rpc_tls=self.rpc_tls,
        )

    async def Fetch(self, request: runner_pb2.FetchRequest, context: Context) -> node_pb2.Download:
        try:
            started = self.fetches.start(request.spec, Path(request.models_dir))
        except NotAHubModel as bad:
            raise InvalidArgument(str(bad)) from bad
        return downloads_to_proto((started,))[0]


def ref_to_proto(ref: ModelRef) -> runner_pb2.ModelRef:
    return runner_pb2.ModelRef(
        model_id=ref.model_id,
        path="" if ref.absent else str(ref.path),
        size_bytes=ref.size_bytes,
        fingerprint=ref.fingerprint,
        absent=ref.absent,
        source=ref.source,
        catalog=ref.catalog,
    )

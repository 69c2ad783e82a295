"""Runner process: wires settings, LlamaServers and the gRPC servicer, and stops children on exit."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.common import cpus, devices, grpc_server, lifecycle, metrics_http
from services.common.logs import event
from services.common.records import Device
from services.common.settings import NodeSettings
from services.proto.mesh.v1 import runner_pb2_grpc
from services.runner import binaries
from services.runner.command import child_environment
from services.runner.fetching import Fetches
from services.runner.metrics import registry_for
from services.runner.servers import LlamaServers
from services.runner.servicer import RunnerServicer
from services.runner.settings import RunnerSettings

log = logging.getLogger(__name__)

DEVICE_REFRESH_S = 30.0
DEVICE_CHANGE_BYTES = 256 * devices.MIB  # less than this is noise, not a model loaded or gone


async def main(node: NodeSettings, settings: RunnerSettings) -> None:
    # The CLI names the folder; started alone (honcho, compose), the runner names it here, once.
    llama_bin = binaries.folder_of(settings.llama_bin, node.cache)
    servers = LlamaServers(
        settings,
        node.home / "rpc-cache",
        llama_bin,
        node.cache,
        split_environment=cpus.split_environment(node.services_idle),
    )
    metrics_http.serve(node.runner_metrics_port, registry_for(servers))
    # Listed once, beside the start: a CUDA build takes seconds to look; Models waits for the list.
    listed = asyncio.create_task(accelerators(llama_bin, settings.device))
    in_use = DevicesInUse(listed)
    watching = asyncio.create_task(in_use.follow(servers.changes.publish))
    server = await grpc_server.start(
        node.runner_grpc_port,
        lambda s: runner_pb2_grpc.add_RunnerServicer_to_server(RunnerServicer(servers, Fetches(servers.changes.publish), listed, in_use), s),
    )
    # Ready once it can start models; without llama.cpp's binaries it still answers, but cannot serve.
    missing = missing_binaries(llama_bin)
    await server.health.set(not missing, missing or "llama.cpp binaries found")
    try:
        await asyncio.Event().wait()
    finally:
        listed.cancel()  # still looking when stopped early: nobody will ask
        watching.cancel()
        # Children first: no llama-server may outlive the runner.
        await servers.stop_all()
        await server.stop(grace=1.0)


class DevicesInUse:
    """The devices as listed at start, their free memory read again every DEVICE_REFRESH_S where
    nvidia-smi can tell (devices.refreshed); a change of at least DEVICE_CHANGE_BYTES is published
    (the Watch stream carries the devices, placement puts them in the node's record)."""

    def __init__(self, listed: asyncio.Task[tuple[Device, ...]]) -> None:
        self.listed = listed
        self.current: tuple[Device, ...] = ()

    async def follow(self, publish: Callable[[], Awaitable[None]]) -> None:
        self.current = await asyncio.shield(self.listed)
        if not any(d.name.upper().startswith("CUDA") for d in self.current):
            return  # nothing nvidia-smi could read again
        while True:
            await asyncio.sleep(DEVICE_REFRESH_S)
            now = devices.refreshed(self.current, await asyncio.to_thread(devices.nvidia_cards))
            if any(abs(a.free_bytes - b.free_bytes) >= DEVICE_CHANGE_BYTES for a, b in zip(now, self.current, strict=True)):
                self.current = now
                await publish()


async def accelerators(llama_bin: Path, device: str) -> tuple[Device, ...]:
    """The devices this node's llama-server would use (those `device` names, if it names any),
    listed with the environment it runs in; none without a binary (the node then offers RAM)."""
    listed = await asyncio.to_thread(devices.list_devices, llama_bin / "llama-server", child_environment(dict(os.environ)))
    found = devices.chosen(listed, device)
    event(log, "devices listed", devices=", ".join(f"{d.name} {d.description} {d.total_bytes // devices.MIB} MiB" for d in found) or "none: RAM")
    return found


def missing_binaries(llama_bin: Path) -> str:
    """'' when llama-server and rpc-server can be started, else why not."""
    try:
        binaries.required(llama_bin)
    except binaries.BinaryMissing as missing:
        return str(missing)
    return ""


def main_from_environment() -> None:
    lifecycle.run_service("runner", main, RunnerSettings)

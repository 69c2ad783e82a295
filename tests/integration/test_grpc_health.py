"""The standard gRPC health check says what is true: NOT_SERVING until a service is ready, SERVING
while it can do its work, NOT_SERVING again when it cannot (a sibling lost, the server stopping).

The shell (services/common/grpc_server.py) with readiness this test controls, then real services
started alone on free ports: the gateway with a fake gossip this test starts and stops, the
runner with and without llama.cpp binaries."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import grpc_server
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc
from tests.nodes import free_port

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


async def check(port: int) -> int | None:
    """The health status the service on port answers; None while nothing answers."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            return (await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)).status
        except grpc.aio.AioRpcError:
            return None


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], what: str, process: subprocess.Popen | None = None, log: Path | None = None, timeout: float = 60.0
) -> None:
    """Until predicate() holds; fails at once with the service's log if it died, else after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"service exited with {process.returncode} waiting for {what}:\n{log.read_text() if log else ''}")
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {what} after {timeout}s:\n{log.read_text()[-3000:] if log else ''}")


def start_service(name: str, workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        env=os.environ | {"MESH_NODE_HOME": str(workdir / "home")} | env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, log


def stop_service(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def test_the_shell_answers_not_serving_until_the_service_says_it_is_ready() -> None:
    async def scenario() -> None:
        port = free_port()
        server = await grpc_server.start(port, lambda _: None)
        try:
            assert await check(port) == NOT_SERVING
            await server.health.set(True, "ready")
            assert await check(port) == SERVING
            await server.health.set(False, "lost what it needs")
            assert await check(port) == NOT_SERVING
            await server.health.set(True, "back")
            await server.health.stopping()
            assert await check(port) == NOT_SERVING
            await server.health.set(True, "too late: stopping is for good")
            assert await check(port) == NOT_SERVING
        finally:
            await server.stop(grace=0)

    asyncio.run(scenario())


def test_the_shell_serves_only_while_its_siblings_are_reachable() -> None:
    async def scenario() -> None:
        port, sibling_port = free_port(), free_port()
        server = await grpc_server.start(port, lambda _: None)
        ready = asyncio.Event()
        async with grpc_server.channel(f"127.0.0.1:{sibling_port}") as sibling:
            follower = asyncio.create_task(grpc_server.serve_while_reachable(server.health, {"sibling": sibling}, (ready,)))
            try:
                sibling_server = await grpc_server.start(sibling_port, lambda _: None)
                await asyncio.sleep(0.5)  # the sibling is up, but this service is not ready yet
                assert await check(port) == NOT_SERVING
                ready.set()
                await wait_for(lambda: _is(port, SERVING), "serving once ready with its sibling up")
                await sibling_server.stop(grace=0)
                await wait_for(lambda: _is(port, NOT_SERVING), "not serving once its sibling is gone")
                sibling_server = await grpc_server.start(sibling_port, lambda _: None)
                await wait_for(lambda: _is(port, SERVING), "serving again once its sibling is back", timeout=60)
                await sibling_server.stop(grace=0)
            finally:
                follower.cancel()
                await server.stop(grace=0)

    asyncio.run(scenario())


async def _is(port: int, status: int) -> bool:
    return await check(port) == status


class FakeGossip(gossip_pb2_grpc.GossipServicer):
    """Gossip as the gateway follows it: one empty mesh view, then a Watch that stays open."""

    async def Watch(self, request, context):
        yield gossip_pb2.MeshView()
        await asyncio.Event().wait()


def test_gateway_serves_only_while_it_follows_gossip(tmp_path: Path) -> None:
    """Before gossip answers, the gateway (endpoint and HTTP servers up) is NOT_SERVING; SERVING
    while it follows gossip's Watch; NOT_SERVING again when gossip goes away."""
    ports = {name: free_port() for name in ("gateway", "gossip", "console", "api")}
    process, log = start_service(
        "gateway",
        tmp_path,
        {
            "MESH_NODE_GATEWAY_GRPC_PORT": str(ports["gateway"]),
            "MESH_NODE_GOSSIP_GRPC_PORT": str(ports["gossip"]),
            "MESH_GATEWAY_CONSOLE_PORT": str(ports["console"]),
            "MESH_GATEWAY_API_PORT": str(ports["api"]),
            "MESH_GATEWAY_PEER_HOST": "127.0.0.1",
        },
    )

    async def console_answers() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                await client.get(f"http://127.0.0.1:{ports['console']}/api/status", timeout=2)
            return True
        except httpx.HTTPError:
            return False

    async def scenario() -> None:
        await wait_for(console_answers, "console up", process, log)
        assert await check(ports["gateway"]) == NOT_SERVING, log.read_text()
        gossip = await grpc_server.start(ports["gossip"], lambda s: gossip_pb2_grpc.add_GossipServicer_to_server(FakeGossip(), s))
        try:
            await wait_for(lambda: _is(ports["gateway"], SERVING), "serving with gossip up", process, log)
        finally:
            await gossip.stop(grace=0)
        await wait_for(lambda: _is(ports["gateway"], NOT_SERVING), "not serving with gossip gone", process, log)

    try:
        asyncio.run(scenario())
    finally:
        stop_service(process)


def test_runner_serves_only_with_llama_binaries(tmp_path: Path) -> None:
    """The runner answers without llama.cpp binaries, but says NOT_SERVING: it cannot start models."""
    built = tmp_path / "built"
    built.mkdir()
    for name in ("llama-server", "ggml-rpc-server"):
        (built / name).write_text("#!/bin/sh\n")
        (built / name).chmod(0o755)
    (tmp_path / "empty").mkdir()

    async def scenario(bin_dir: Path, expected: int) -> None:
        port = free_port()
        process, log = start_service(
            "runner",
            tmp_path / f"with-{bin_dir.name}",
            {"MESH_NODE_RUNNER_GRPC_PORT": str(port), "MESH_NODE_RUNNER_METRICS_PORT": str(free_port()), "MESH_LLAMA_BIN": str(bin_dir)},
        )
        try:
            # The runner logs its first health word once it has looked for the binaries.
            await wait_for(lambda: _logged(log, " health "), "health decided", process, log)
            assert await check(port) == expected, log.read_text()
        finally:
            stop_service(process)

    asyncio.run(scenario(built, SERVING))
    asyncio.run(scenario(tmp_path / "empty", NOT_SERVING))


async def _logged(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text()

"""The MCP server over streamable HTTP, at the console's /mcp: its route, and the SDK's session
manager that must run while it answers. Owns this transport only.

Built on the first request: importing the SDK costs about half a second of CPU, which every node
start would pay (most nodes never see an agent on /mcp). The route stands from the start; its first
request builds the server, starts the session manager, and from then on requests go straight to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.records import MeshView
from services.gateway.blackboard.service import BoardClient

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

PATH = "/mcp"


class LazyMcp:
    """The ASGI app behind /mcp: the SDK's streamable HTTP app for `blackboard` and the mesh view,
    answering only requests that name one of `hosts` (the SDK's own Host and Origin check, as the
    console's). Stateless: each request stands alone, so no session is held between an agent's calls."""

    def __init__(self, blackboard: BoardClient, view: Callable[[], MeshView], hosts: Sequence[str]) -> None:
        self.blackboard, self.view, self.hosts = blackboard, view, list(hosts)
        self._app: ASGIApp | None = None
        self._lock = asyncio.Lock()
        self._running: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or await self._start()
        await app(scope, receive, send)

    async def _start(self) -> ASGIApp:
        async with self._lock:
            if self._app is None:
                server = _server(self.blackboard, self.view)
                app = _streamable_app(server, self.hosts)  # builds the session manager
                started = asyncio.Event()
                self._running = asyncio.create_task(_run(server, started))
                await started.wait()
                self._app = app
            return self._app

    async def stop(self) -> None:
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)


def _server(blackboard: BoardClient, view: Callable[[], MeshView]) -> MCPServer:
    from services.gateway.mcp.tools import mesh_server  # the SDK, on first use (above)

    return mesh_server(blackboard, view)


def _streamable_app(server: MCPServer, hosts: Sequence[str]) -> ASGIApp:
    from mcp.server.transport_security import TransportSecuritySettings  # as _server

    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{host}:*" for host in hosts],
        allowed_origins=[f"http://{host}:*" for host in hosts],
    )
    return server.streamable_http_app(streamable_http_path=PATH, stateless_http=True, transport_security=security)


async def _run(server: MCPServer, started: asyncio.Event) -> None:
    async with server.session_manager.run():
        started.set()
        await asyncio.Event().wait()  # until stop() cancels it


def routes(mcp: LazyMcp) -> list[Route]:
    return [Route(PATH, endpoint=mcp)]


@asynccontextmanager
async def running(mcp: LazyMcp | None) -> AsyncIterator[None]:
    """The console app's lifespan: the session manager, once started, stops with the app."""
    try:
        yield
    finally:
        if mcp is not None:
            await mcp.stop()

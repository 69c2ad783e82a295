"""The MCP server over streamable HTTP, at the console's /mcp: its route, and the SDK's session
manager that must run while the console app does (its lifespan). Owns this transport only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import BaseRoute

PATH = "/mcp"


def routes(server: MCPServer, hosts: Sequence[str]) -> list[BaseRoute]:
    """/mcp, answering only requests that name one of `hosts` (the SDK's own Host and Origin check, as
    the console's). Stateless: each request stands alone, so no session is held between an agent's calls."""
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{host}:*" for host in hosts],
        allowed_origins=[f"http://{host}:*" for host in hosts],
    )
    return server.streamable_http_app(streamable_http_path=PATH, stateless_http=True, transport_security=security).routes


@asynccontextmanager
async def running(server: MCPServer | None) -> AsyncIterator[None]:
    """The session manager of `server` (routes() built it) while the app runs; None: nothing to run."""
    if server is None:
        yield
        return
    async with server.session_manager.run():
        yield

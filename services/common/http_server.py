"""Serving a FastAPI app with uvicorn inside a service's own event loop.

Owns the uvicorn shell: our lifecycle handles signals, so uvicorn must not install its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, started: asyncio.Event | None) -> None:
        super().__init__(config)
        self.started_event = started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Listening now: the service's health may say so (a failed bind leaves started False).
        if self.started and self.started_event is not None:
            self.started_event.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The service's lifecycle owns SIGINT/SIGTERM and cancels us; uvicorn must not take them.
        yield


async def serve(app: ASGIApp, host: str, port: int, started: asyncio.Event | None = None) -> None:
    """Serve until cancelled, then close connections gracefully; `started` is set once listening."""
    # lifespan on: an app's startup runs before it listens (the console's /mcp needs the MCP SDK's session manager running).
    config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on", access_log=False, timeout_graceful_shutdown=2)
    server = _Server(config, started)
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        await task
    if not server.started:
        raise OSError(f"cannot listen on {host}:{port}")

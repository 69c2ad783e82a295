"""Routes of the console: the page, /api/status and /api/events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from sse_starlette.sse import EventSourceResponse

from services.common.exposure import is_loopback
from services.gateway.console.status import status

STATIC = Path(__file__).parent / "static"

router = APIRouter()


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


def from_this_machine(request: Request) -> bool:
    """The invite token (it carries the mesh secret) goes only to a client on loopback: the console
    binds loopback, and this holds even where something forwards other machines to it."""
    return request.client is not None and is_loopback(request.client.host)


@router.get("/api/status")
async def get_status(request: Request) -> dict:
    return status(
        request.app.state.mirror.view,
        request.app.state.fingerprint,
        request.app.state.metrics_urls,
        with_token=from_this_machine(request),
        addresses=tuple(request.app.state.settings.invite_addresses),
    )


@router.get("/api/events")
async def events(request: Request) -> EventSourceResponse:
    mirror, fingerprint, urls = request.app.state.mirror, request.app.state.fingerprint, request.app.state.metrics_urls
    with_token, addresses = from_this_machine(request), tuple(request.app.state.settings.invite_addresses)

    async def stream() -> AsyncIterator[dict]:
        seen = -1
        while True:
            # A slow browser only ever gets the latest status: versions in between are skipped.
            seen = await mirror.changes.wait_newer(seen)
            yield {"event": "status", "data": json.dumps(status(mirror.view, fingerprint, urls, with_token=with_token, addresses=addresses))}

    return EventSourceResponse(stream(), ping=request.app.state.settings.events_keepalive)

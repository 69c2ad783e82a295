"""Routes of the console: the page, /api/status and /api/events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from services.common.exposure import is_loopback
from services.gateway.console.status import status
from services.gateway.errors import Forbidden, InvalidRequest

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


class Approval(BaseModel):
    code: str = Field(min_length=1, max_length=16)


@router.post("/api/pairing/approve")
async def approve_pairing(request: Request, approval: Approval) -> dict:
    """The console's Approve button. Only a page of this console may press it: a client on loopback,
    a JSON body (another site's page cannot send one without a CORS preflight we never answer), and
    no Origin naming another site."""
    origin = request.headers.get("origin")
    if not from_this_machine(request) or (origin and urlsplit(origin).netloc != request.headers.get("host")):
        raise Forbidden("pairing is approved from this machine's console only")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidRequest("send the code as JSON")
    return await request.app.state.approve(approval.code)


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

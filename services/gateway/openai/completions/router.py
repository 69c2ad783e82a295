"""Route of POST /v1/completions: validate, then relay."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.gateway.openai.completions.dialect import COMPLETIONS
from services.gateway.openai.completions.schemas import CompletionRequest
from services.gateway.openai.protocol import parse_body

router = APIRouter()


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    raw = await request.body()
    body = parse_body(raw, CompletionRequest)
    return await request.app.state.relay.forward("/v1/completions", body.model, body.stream, raw, body.affinity(), COMPLETIONS)

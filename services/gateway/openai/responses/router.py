"""Route of POST /v1/responses: validate, then relay as is (the pinned llama-server serves the
Responses API natively, translating to chat itself)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.gateway.openai.protocol import parse_body
from services.gateway.openai.responses.dialect import RESPONSES
from services.gateway.openai.responses.schemas import ResponsesRequest

router = APIRouter()


@router.post("/v1/responses")
async def responses(request: Request) -> Response:
    raw = await request.body()
    body = parse_body(raw, ResponsesRequest)
    return await request.app.state.relay.forward("/v1/responses", body.model, body.stream, raw, body.affinity(), RESPONSES)

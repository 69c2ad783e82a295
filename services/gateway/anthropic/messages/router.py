"""Routes of POST /v1/messages and /v1/messages/count_tokens: validate, then relay as is (the
pinned llama-server serves both natively)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.gateway.anthropic.messages.dialect import MESSAGES
from services.gateway.anthropic.messages.schemas import CountTokensRequest, MessagesRequest
from services.gateway.openai.protocol import parse_body

router = APIRouter()


@router.post("/v1/messages")
async def messages(request: Request) -> Response:
    raw = await request.body()
    body = parse_body(raw, MessagesRequest)
    return await request.app.state.relay.forward("/v1/messages", body.model, body.stream, raw, body.affinity(), MESSAGES)


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    raw = await request.body()
    body = parse_body(raw, CountTokensRequest)
    return await request.app.state.relay.forward("/v1/messages/count_tokens", body.model, False, raw, dialect=MESSAGES)

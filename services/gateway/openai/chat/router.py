"""Route of POST /v1/chat/completions: validate, then relay."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.gateway.openai.chat.dialect import CHAT
from services.gateway.openai.chat.schemas import ChatCompletionRequest
from services.gateway.openai.protocol import parse_body

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    raw = await request.body()
    body = parse_body(raw, ChatCompletionRequest)
    return await request.app.state.relay.forward("/v1/chat/completions", body.model, body.stream, raw, body.affinity(), CHAT)

"""Route of GET /v1/models."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.gateway.openai.models.listing import model_list

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request) -> dict:
    return model_list(request.app.state.mirror.view)

"""Routes of the blackboard: POST /v1/blackboard/posts, GET /v1/blackboard/posts (the feed),
GET /v1/blackboard/search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.common import scrubber
from services.gateway.blackboard.schemas import PostBody, post_json, post_list
from services.gateway.blackboard.service import BoardClient

router = APIRouter()
MAX_LIMIT = 500  # a board holds no more


@router.post("/v1/blackboard/posts")
async def post(request: Request, body: PostBody) -> dict[str, object]:
    board: BoardClient = request.app.state.blackboard
    made, scrubbed = await board.post(body.text, body.tags)
    # What the scrubber rewrote on the way (home paths), so the caller knows the text changed.
    return post_json(made) | {"scrubbed": scrubber.counts(scrubbed.findings)}


@router.get("/v1/blackboard/posts")
async def feed(
    request: Request,
    since: Annotated[float, Query(ge=0, description="unix time: only posts after it")] = 0.0,
    author: Annotated[str, Query(alias="from", max_length=128, description="node id or name")] = "",
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 0,
) -> dict[str, object]:
    board: BoardClient = request.app.state.blackboard
    return post_list(await board.feed(since, author, limit))


@router.get("/v1/blackboard/search")
async def search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=1024, description="terms, separated by spaces")],
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 0,
) -> dict[str, object]:
    board: BoardClient = request.app.state.blackboard
    return post_list(await board.search(q.split(), limit))

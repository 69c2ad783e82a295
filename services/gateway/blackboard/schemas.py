"""Bodies and answers of /v1/blackboard/…."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.proto.mesh.v1 import peer_pb2


class PostBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    tags: list[str] = []


def post_json(post: peer_pb2.BoardPost) -> dict[str, object]:
    return {
        "id": post.id,
        "object": "blackboard.post",
        "author_id": post.author_id,
        "author_name": post.author_name,
        "created_at": post.created_at,
        "text": post.text,
        "tags": list(post.tags),
    }


def post_list(posts: list[peer_pb2.BoardPost]) -> dict[str, object]:
    return {"object": "list", "data": [post_json(p) for p in posts]}

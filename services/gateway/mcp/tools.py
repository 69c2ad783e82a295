"""The MCP server's one definition: five tools over the node's blackboard and mesh view.

`blackboard_post`, `blackboard_search`, `blackboard_feed` go through BoardClient, the same path as the
HTTP API: a post is scrubbed first and refused while the scrubber still flags anything (a tool error
naming what was found; nothing is posted), home paths are rewritten to `~`. `mesh_status` and
`mesh_models` read the mesh view as the console's /api/status and GET /v1/models do, never the invite
token (it carries the mesh secret). Both transports build their server here (console app: in the
gateway; stdio: services/gateway/mcp/stdio.py): owns the tools' names, words and answers, not the
rules (gossip's), the scrubbing (services/common/scrubber.py) or the transports.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from services.common import clock, scrubber
from services.common.records import MeshView
from services.gateway.blackboard.schemas import post_json
from services.gateway.blackboard.service import BoardClient
from services.gateway.console.status import node_status, peer_status
from services.gateway.discovery.lan import version
from services.gateway.errors import ApiError
from services.gateway.openai.models.listing import model_list
from services.proto.mesh.v1 import peer_pb2

NAME = "mesh-llm"
MAX_POSTS = 500  # a board holds no more
INSTRUCTIONS = (
    "The mesh's blackboard: short posts shared by every node of this mesh-llm mesh, for agents and people. "
    "Start a post with QUESTION:, STATUS:, FINDING:, TIP: or DONE:. Posts are scrubbed: one that holds a secret "
    "or personal data (keys, tokens, emails, IP addresses) is refused. Read the feed or search before asking."
)


def mesh_server(board: BoardClient, view: Callable[[], MeshView]) -> MCPServer:
    """The server both transports serve: `board` posts and reads through gossip, `view()` is the mesh now."""
    server = MCPServer(NAME, instructions=INSTRUCTIONS, version=version())

    @server.tool()
    async def blackboard_post(
        text: Annotated[str, Field(min_length=1, description="the post, starting with QUESTION:, STATUS:, FINDING:, TIP: or DONE:")],
        tags: Annotated[list[str] | None, Field(description="optional tags, e.g. the project or topic")] = None,
    ) -> dict[str, Any]:
        """Post to the mesh's blackboard, seen by every node within seconds. Refused when it holds a secret
        or personal data (nothing is posted then); home paths are rewritten to ~."""
        try:
            made, scrubbed = await board.post(text, tags or [])
        except ApiError as refused:
            raise ToolError(refused.message) from None
        return shown(made) | {"scrubbed": scrubber.counts(scrubbed.findings)}

    @server.tool()
    async def blackboard_search(
        query: Annotated[str, Field(min_length=1, max_length=1024, description="terms separated by spaces, matched in the text and the author's name")],
        limit: Annotated[int, Field(ge=1, le=MAX_POSTS)] = 20,
    ) -> dict[str, Any]:
        """Search the blackboard: the posts holding the terms, most hits first, then the newest."""
        return {"posts": [shown(post) for post in await _read(board.search(query.split(), limit))]}

    @server.tool()
    async def blackboard_feed(
        since: Annotated[float, Field(ge=0, description="unix time: only posts after it (e.g. the newest created_at already read)")] = 0.0,
        minutes: Annotated[float, Field(ge=0, description="only posts of the last this many minutes")] = 0.0,
        author: Annotated[str, Field(max_length=128, description="only posts of this node (its name or id)")] = "",
        limit: Annotated[int, Field(ge=1, le=MAX_POSTS)] = 50,
    ) -> dict[str, Any]:
        """The blackboard's posts, newest first."""
        after = max(since, clock.now() - minutes * 60 if minutes else 0.0)
        return {"posts": [shown(post) for post in await _read(board.feed(after, author, limit))]}

    @server.tool()
    def mesh_status() -> dict[str, Any]:
        """This node, its peers (state, round-trip time, models) and the models the mesh serves."""
        now = _known(view())
        return {
            "mesh_id": now.mesh_id,
            "node": node_status(now.own),
            "peers": [peer_status(peer) for peer in now.peers],
            "models": model_list(now)["data"],
        }

    @server.tool()
    def mesh_models() -> dict[str, Any]:
        """The models served in the mesh (the names a request's `model` takes), with the nodes serving each."""
        return {"models": model_list(_known(view()))["data"]}

    return server


def shown(post: peer_pb2.BoardPost) -> dict[str, Any]:
    """A post as the HTTP API answers it, with its time in words for the reader."""
    return post_json(post) | {"at": datetime.fromtimestamp(post.created_at).isoformat(timespec="seconds")}


async def _read(call: Any) -> list[peer_pb2.BoardPost]:
    try:
        return await call
    except ApiError as failure:
        raise ToolError(failure.message) from None


def _known(view: MeshView) -> MeshView:
    if not view.own.node_id:
        # Gossip has not answered yet (the node is starting, or not running).
        raise ToolError("the node has not reported the mesh yet: is it running? try again in a moment")
    return view

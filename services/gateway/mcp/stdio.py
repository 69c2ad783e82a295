"""`mesh-llm blackboard --mcp`: the MCP server on stdin/stdout, for an agent that starts it as a child.

It talks to the running node's gossip service (the address the CLI found under --home) as the gateway
does: the blackboard through BoardClient, the mesh view followed from gossip's Watch stream. Stdout
carries MCP messages only; logs go to stderr. Owns this shell; the tools are tools.py's.
"""

from __future__ import annotations

import asyncio

from services.common import grpc_server
from services.gateway.blackboard.service import BoardClient
from services.gateway.mcp.tools import mesh_server
from services.gateway.mirror import MeshMirror
from services.proto.mesh.v1 import gossip_pb2_grpc


async def serve(gossip_address: str) -> None:
    """Serve until the agent closes stdin; a node restarting meanwhile is followed again (calls.follow)."""
    mirror = MeshMirror()
    async with grpc_server.channel(gossip_address) as gossip:
        server = mesh_server(BoardClient(gossip_pb2_grpc.GossipStub(gossip)), lambda: mirror.view)
        async with asyncio.TaskGroup() as group:
            following = group.create_task(mirror.follow(gossip))
            await server.run_stdio_async()
            following.cancel()  # the agent is done: nothing left to follow the mesh for

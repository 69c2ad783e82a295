"""The MCP server as an agent meets it, through the official `mcp` SDK's client, against a real node
serving SmolLM2: over stdio (`mesh-llm blackboard --mcp --home HOME`, started by the client as an
agent would) and over streamable HTTP (the console's /mcp). Each lists the five tools, posts,
searches, reads the feed and asks for the mesh's status and models; a post holding a secret or
personal data is a tool error naming what was found, and the board never gets it (each class of
the scrubber's table on stdio; a secret, an email and a tag on HTTP)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client import Transport
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from services.common.scrubber import NAMES, Kind
from tests.conftest import SMOLLM2
from tests.nodes import MESH_LLM_ARGV, NodeProcess
from tests.unit.test_scrubber import CAUGHT

pytestmark = pytest.mark.e2e

TOOLS = {"blackboard_post", "blackboard_search", "blackboard_feed", "mesh_status", "mesh_models"}


def board(node: NodeProcess) -> list[dict]:
    """Every post on the node's board, read through its console's HTTP API (not through MCP)."""
    response = httpx.get(f"{node.console_url}/v1/blackboard/posts", params={"limit": 500}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def answer(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


async def exercise(client: Client, node: NodeProcess, transport: str) -> None:
    """What every agent does: the tools, a post, a search and the feed that find it, the mesh's state."""
    listed = await client.list_tools()
    assert {tool.name for tool in listed.tools} == TOOLS
    assert all(tool.description for tool in listed.tools)

    text = f"FINDING: the {transport} transport reaches the board"
    made = answer(await client.call_tool("blackboard_post", {"text": text, "tags": [transport]}))
    assert made["text"] == text and made["tags"] == [transport] and made["author_id"] == node.status()["id"]
    assert made["id"] in {post["id"] for post in board(node)}

    found = answer(await client.call_tool("blackboard_search", {"query": f"{transport} transport"}))["posts"]
    assert [post["id"] for post in found] == [made["id"]]
    feed = answer(await client.call_tool("blackboard_feed", {"minutes": 30}))["posts"]
    assert made["id"] in {post["id"] for post in feed}
    assert answer(await client.call_tool("blackboard_feed", {"since": made["created_at"]}))["posts"] == []

    status = answer(await client.call_tool("mesh_status", {}))
    assert status["node"]["id"] == node.status()["id"] and status["peers"] == []
    assert SMOLLM2 in {model["id"] for model in status["models"]}
    assert "token" not in json.dumps(status)  # the invite token carries the mesh secret: never to an agent
    models = answer(await client.call_tool("mesh_models", {}))["models"]
    assert [model["id"] for model in models] == [SMOLLM2]
    assert models[0]["nodes"][0]["state"] == "ready"


async def refused(client: Client, node: NodeProcess, text: str, name: str, tags: list[str] | None = None) -> None:
    before = board(node)
    message = error_text(await client.call_tool("blackboard_post", {"text": text, "tags": tags or []}))
    assert name in message and "nothing was posted" in message, message
    assert board(node) == before


@pytest.fixture
def node(start_node) -> NodeProcess:
    served = start_node("--model", SMOLLM2)
    served.wait_ready(SMOLLM2)
    return served


def test_mcp_over_stdio(node: NodeProcess, tmp_path: Path) -> None:
    argv = [*MESH_LLM_ARGV, "blackboard", "--mcp", "--home", str(node.home)]
    server = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
    log = tmp_path / "mcp-stderr.log"
    with log.open("w") as errors:
        asyncio.run(over_stdio(stdio_client(server, errlog=errors), node))
    texts = {post["text"] for post in board(node)}
    assert not any(text in texts for text, kind, _ in CAUGHT if kind != Kind.HOME_PATH), log.read_text()


async def over_stdio(transport: Transport, node: NodeProcess) -> None:
    async with Client(transport) as client:
        await exercise(client, node, "stdio")
        # The scrubber's table: every flagged class refused and named, home paths posted as ~.
        for text, kind, scrubbed in CAUGHT:
            if kind == Kind.HOME_PATH:
                made = answer(await client.call_tool("blackboard_post", {"text": text}))
                assert made["text"] == scrubbed and made["scrubbed"] == {"home_path": 1}
            else:
                await refused(client, node, text, NAMES[kind])


def test_mcp_over_http_at_the_console(node: NodeProcess) -> None:
    asyncio.run(over_http(f"{node.console_url}/mcp", node))
    # Another site's page cannot use it: the SDK checks the Origin (and the Host, as the console does).
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "page", "version": "1"}},
    }
    for origin, expected in ((node.console_url, 200), ("http://evil.example", 403)):
        headers = {"Accept": "application/json, text/event-stream", "Origin": origin}
        assert httpx.post(f"{node.console_url}/mcp", json=initialize, headers=headers, timeout=10).status_code == expected, origin


async def over_http(url: str, node: NodeProcess) -> None:
    async with Client(url) as client:
        await exercise(client, node, "http")
        await refused(client, node, "STATUS: deploying with key AKIAIOSFODNN7EXAMPLE", NAMES[Kind.SECRET])
        await refused(client, node, "QUESTION: ask alice.smith@example.com?", NAMES[Kind.EMAIL])
        await refused(client, node, "TIP: tags are checked too", NAMES[Kind.EMAIL], tags=["bob@example.com"])

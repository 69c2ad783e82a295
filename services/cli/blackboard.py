"""`mesh-llm blackboard post TEXT | search TERMS | feed [--since WHEN] [--from NODE] [--limit N]`:
the running node's blackboard (found under --home, as `admin` finds it), through its gossip service.
`mesh-llm blackboard --mcp`: the MCP server on stdio for that node (services/gateway/mcp/).
`mesh-llm blackboard install-skill [--dir SKILLS]`: the agent skill that explains the board's
conventions, written where agents read skills (Claude Code's ~/.claude/skills by default).

A post is scrubbed here first: when the scrubber finds anything, the command warns, shows the
scrubbed text and posts that (the node scrubs again and refuses anything still flagged). Owns the
command's words and output; the rules are gossip's, the scrubbing services/common/scrubber.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import grpc

from services.cli.admin import NODE_FILE
from services.cli.agents.launcher import write_files
from services.cli.flags import UsageError
from services.common import logs, scrubber
from services.common.settings import NodeSettings
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc, peer_pb2

USAGE = (
    "usage: mesh-llm blackboard post TEXT [--tag TAG]... | search TERMS... | feed [--since 10m|2h|1d|DATE] [--from NODE] [--limit N]"
    " | --mcp | install-skill [--dir SKILLS]"
)
TIMEOUT = 10.0  # seconds the node has to answer
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SKILL = Path(__file__).with_name("blackboard_skill.md")  # the skill's text, as installed
SKILL_NAME = "mesh-llm-blackboard"  # its folder: agents find a skill by its folder's SKILL.md
SKILLS = Path("~/.claude/skills")  # where Claude Code reads personal skills (opencode reads them there too)


def run(args: argparse.Namespace) -> int:
    words = args.command[1:]
    if args.mcp:
        if words or args.tag or args.since or args.author or args.limit is not None or args.dir:
            raise UsageError("blackboard --mcp takes no other words or flags (but --home)")
        return serve_mcp(args.home or NodeSettings().home)
    if args.dir and words[:1] != ["install-skill"]:
        raise UsageError("--dir is for blackboard install-skill")
    if words[:1] == ["install-skill"]:
        if words[1:] or args.tag or args.since or args.author or args.limit is not None:
            raise UsageError("usage: mesh-llm blackboard install-skill [--dir SKILLS]")
        for line in install_skill(args.dir or SKILLS):
            print(line)
        return 0
    if not words or words[0] not in ("post", "search", "feed"):
        raise UsageError(USAGE)
    action, rest = words[0], words[1:]
    if action != "post" and args.tag:
        raise UsageError("--tag is for blackboard post")
    if action != "feed" and (args.since or args.author or args.limit):
        raise UsageError("--since, --from and --limit are for blackboard feed")
    if action in ("post", "search") and not rest:
        raise UsageError(USAGE)
    if action == "feed" and rest:
        raise UsageError(USAGE)
    since = since_of(args.since, time.time()) if args.since else 0.0
    if args.limit is not None and not 0 < args.limit <= 500:
        raise UsageError("--limit is a number of posts from 1 to 500")
    home = args.home or NodeSettings().home
    with _gossip(home) as channel:
        stub = gossip_pb2_grpc.GossipStub(channel)
        try:
            if action == "post":
                post(stub, " ".join(rest), list(args.tag))
            elif action == "search":
                show(stub.Search(gossip_pb2.SearchRequest(terms=rest), timeout=TIMEOUT).posts, "no post holds those terms")
            else:
                request = gossip_pb2.FeedRequest(since=since, author=args.author or "", limit=args.limit or 0)
                show(stub.Feed(request, timeout=TIMEOUT).posts, "no post yet" if not since else "no post since then")
        except grpc.RpcError as failure:
            code = failure.code()
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION):
                raise UsageError(failure.details()) from None
            raise UsageError(f"the node at {home} does not answer: {code.name}") from None
    return 0


def serve_mcp(home: Path) -> int:
    """The MCP server on stdio until the agent closes it; stdout is the protocol's, so logs go to stderr."""
    port = _node(home)["grpc_ports"]["gossip"]
    # Imported here: the MCP SDK is a second's import that no other command (a node above all) needs.
    from services.gateway.mcp import stdio

    logs.configure("mcp", "", "WARNING")
    asyncio.run(stdio.serve(f"127.0.0.1:{port}"))
    return 0


def install_skill(folder: Path) -> list[str]:
    """The skill file in `folder`/mesh-llm-blackboard/SKILL.md; a different file there is kept beside it
    (SKILL.md.<time>.bak) before it is replaced. One line saying where, or that it was there already."""
    path = folder.expanduser() / SKILL_NAME / "SKILL.md"
    return write_files({path: SKILL.read_text()}) or [f"{path} is up to date"]


def post(stub: gossip_pb2_grpc.GossipStub, text: str, tags: list[str]) -> None:
    tagged = scrubber.scrub(" ".join(tags)).findings
    if tagged:
        raise UsageError(f"a tag holds {scrubber.describe(tagged)}: tags are posted as written")
    scrubbed = scrubber.scrub(text)
    if scrubbed.findings:
        print(f"mesh-llm: warning: the post held {scrubber.describe(scrubbed.findings)}; posting it as:", file=sys.stderr)
        print(_indent(scrubbed.text), file=sys.stderr)
    made = stub.Post(gossip_pb2.PostRequest(text=scrubbed.text, tags=tags), timeout=TIMEOUT)
    print(f"posted {made.id[:12]} as {made.author_name} at {_when(made.created_at)}")


def show(posts: Sequence[peer_pb2.BoardPost], nothing: str) -> None:
    if not posts:
        print(nothing)
    for p in posts:
        tags = f"  [{', '.join(p.tags)}]" if p.tags else ""
        print(f"{_when(p.created_at)}  {p.author_name} ({p.author_id[:8]}){tags}")
        print(_indent(p.text))


def since_of(text: str, now: float) -> float:
    """Unix time from '30s', '10m', '2h', '1d' (that long ago) or an ISO date (local time if no zone)."""
    relative = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if relative:
        return now - float(relative.group(1)) * UNITS[relative.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UsageError(f"--since {text}: a time ago (30s, 10m, 2h, 1d) or a date (2025-01-31 or 2025-01-31T14:00)") from None


def _gossip(home: Path) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{_node(home)['grpc_ports']['gossip']}")


def _node(home: Path) -> dict:
    """Where the node last run with this home listens (node.json, written by the CLI that started it)."""
    try:
        return json.loads((home / NODE_FILE).read_text())
    except FileNotFoundError:
        raise UsageError(f"no node has run with home {home} (start one, or pass --home)") from None


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines() or [""])

"""`mesh-llm blackboard post TEXT | search TERMS | feed [--since WHEN] [--from NODE] [--limit N]`:
the running node's blackboard (found under --home, as `admin` finds it), through its gossip service.

A post is scrubbed here first: when the scrubber finds anything, the command warns, shows the
scrubbed text and posts that (the node scrubs again and refuses anything still flagged). Owns the
command's words and output; the rules are gossip's, the scrubbing services/common/scrubber.py's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import grpc

from services.cli.admin import NODE_FILE
from services.cli.flags import UsageError
from services.common import scrubber
from services.common.settings import NodeSettings
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc, peer_pb2

USAGE = "usage: mesh-llm blackboard post TEXT [--tag TAG]... | search TERMS... | feed [--since 10m|2h|1d|DATE] [--from NODE] [--limit N]"
NOT_BUILT = ("install-skill",)  # the agents' side of the board, still to come (with --mcp)
TIMEOUT = 10.0  # seconds the node has to answer
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def run(args: argparse.Namespace) -> int:
    words = args.command[1:]
    if args.mcp:
        raise UsageError("'blackboard --mcp' is not built yet")
    if words[:1] and words[0] in NOT_BUILT:
        raise UsageError(f"'blackboard {words[0]}' is not built yet")
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
    try:
        node = json.loads((home / NODE_FILE).read_text())
    except FileNotFoundError:
        raise UsageError(f"no node has run with home {home} (start one, or pass --home)") from None
    return grpc.insecure_channel(f"127.0.0.1:{node['grpc_ports']['gossip']}")


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines() or [""])

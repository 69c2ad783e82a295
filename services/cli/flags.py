"""The command line: parsing and checking flags, with one-line errors and exit code 2.

Owns the flag surface and the checks done before anything starts; must not start processes.
"""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from services.common import mesh_identity
from services.common.exposure import is_loopback
from services.common.invite import InviteToken, TokenError, decode
from services.common.ports import family_of
from services.common.records import DownloadPolicy
from services.common.settings import NodeSettings
from services.gateway.discovery.listing import MAX_COUNT, MAX_STRING
from services.gateway.settings import GatewaySettings
from services.gossip.settings import PROFILES
from services.runner.command import Speculation
from services.runner.models import ModelError, ModelRef, NotDownloaded, resolve

AGENTS = ("claude", "goose", "opencode", "pi")  # coding agents launched on the mesh (services/cli/agents)
COMMANDS = ("rotate-key", "admin", "drop", "moe", "download", "models", "discover", "blackboard", *AGENTS)
# The seed's surface that is planned but not built: each answers "not built yet" (exit 2) instead of
# "unrecognized", so a user following the seed's docs learns it is coming, not that they mistyped.
NOT_BUILT_COMMANDS: tuple[str, ...] = ()
NOT_BUILT_YET: dict[str, str] = {}


# What a bare --draft holds: the catalog's draft of the model (mesh-llm download NAME --draft).
DRAFT = "catalog"


class UsageError(Exception):
    """Bad input on the command line; the message is the one line the user sees."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, exit 2: argparse's usage block would bury the reason.
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mesh-llm", description="Serve LLMs from the pooled memory of several machines behind one OpenAI API.")
    p.add_argument(
        "command",
        nargs="*",
        help="rotate-key | admin peers|self|leave | drop MODEL (talk to the running node at --home) | moe check MODEL (measure an expert split) | "
        "download [MODEL] (list the catalog, or fetch a model: catalog name, ORG/REPO:QUANT, ORG/REPO/FILE.gguf or a Hub file URL) | "
        "models [rm NAME] (models on disk) | discover (meshes announced on the LAN and listed on Nostr) | "
        "claude|goose|opencode|pi [--model M] [--write] [-- ARGS] (a coding agent on the mesh: the local gateway, else a client node started for it) | "
        "blackboard post TEXT|search TERMS|feed|--mcp|install-skill (the mesh's blackboard, through the node at --home; its MCP server; the agents' skill file)",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        help="model to serve (repeatable): catalog name (any case, or a unique part such as 235b; NAME:QUANT for another quant), "
        "GGUF path or a file in ~/.models, ORG/REPO:QUANT, ORG/REPO/FILE.gguf or a huggingface.co file URL; "
        "a Hub model not on disk is downloaded first (the console shows how far), unless --download never",
    )
    p.add_argument(
        "--download",
        default=DownloadPolicy.CATALOG,
        choices=[str(policy) for policy in DownloadPolicy],
        help="what the mesh may make this node download: a model its demand asks a standby to serve, a split's layers "
        "(default catalog: the catalog's models, known publishers and sizes; any: any Hub model; never: only what is on disk, "
        "--model included)",
    )
    p.add_argument("--port", type=int, default=9337, help="OpenAI API port (default 9337)")
    p.add_argument("--console", type=int, default=3131, help="console port (default 3131)")
    p.add_argument("--name", help="node name shown in the console (default: host name)")
    p.add_argument("--max-vram", type=float, help="memory this node offers, in GB (default: all)")
    p.add_argument("--device", default="", help="llama.cpp device for inference, e.g. CUDA0 (default: llama.cpp's choice)")
    p.add_argument("--ctx-size", type=int, default=0, help="context in tokens, shared by the slots (default: 4K-64K from the memory the weights leave)")
    p.add_argument("--parallel", type=int, default=0, help="requests a model serves at once (default: from the context, 4-16)")
    p.add_argument(
        "--cache-type",
        default="",
        choices=["", "f16", "bf16", "f32", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"],
        help="KV-cache type (default by the weights' size: f16 under 5 GB, q8_0 keys/q4_0 values to 50 GB, q4_0 above)",
    )
    p.add_argument("--listen-all", action="store_true", help="expose the API on all interfaces (needs --api-key)")
    p.add_argument("--api-key", default="", help="bearer key the API requires")
    p.add_argument("--home", type=Path, help="node state folder (default ~/.mesh-llm)")
    p.add_argument("--models-dir", type=Path, default=Path.home() / ".models", help="where model files are looked up by name")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--join", help="invite token printed by a node of the mesh to join")
    p.add_argument("--client", action="store_true", help="join as an API-only node: serves no model, offers no memory")
    p.add_argument("--bind-port", type=int, default=0, help="UDP port of the QUIC endpoint peers connect to (default: a free one)")
    p.add_argument("--host", default="", help="bind the API, console and QUIC endpoint to this address (test meshes on 127.0.0.x)")
    p.add_argument("--advertise", default="", help="host:port peers should dial instead of the bound address (NAT, test relays)")
    p.add_argument("--profile", default="lan", choices=sorted(PROFILES), help="gossip timings (default lan)")
    p.add_argument("--join-timeout", type=float, default=0.0, help="seconds to try joining before giving up (default: the profile's)")
    p.add_argument("--split", action="store_true", help="split models over nodes even when they fit one (pipeline over RPC)")
    p.add_argument(
        "--standby", action="store_true", help="serve nothing until the mesh's demand asks for a model this node holds (--model then only names models to hold)"
    )
    p.add_argument("--no-announce", action="store_true", help="do not announce this node on the LAN over mDNS (mesh-llm discover will not list it)")
    p.add_argument(
        "--auto",
        action="store_true",
        help="find a mesh and join it: the LAN's and the public directory's meshes scored, the best few probed, the first that answers "
        "joined with its listing's public-join token; none: start a mesh of its own serving --model, else the largest catalog model that fits",
    )
    p.add_argument("--blackboard", action="store_true", help="keep the blackboard on in a public mesh (--publish); it is on in private meshes regardless")
    p.add_argument("--tag", action="append", default=[], help="blackboard post: a tag for the post (repeatable)")
    p.add_argument("--since", default="", help="blackboard feed: posts after a time ago (30s, 10m, 2h, 1d) or a date")
    p.add_argument("--from", dest="author", default="", help="blackboard feed: posts of one node (its name or id)")
    p.add_argument("--limit", type=int, help="blackboard feed: at most this many posts, newest first (default 50)")
    p.add_argument("--mcp", action="store_true", help="blackboard: serve the MCP server on stdio (the node at --home), for an agent to start")
    p.add_argument("--dir", type=Path, help="blackboard install-skill: the skills folder to write into (default ~/.claude/skills)")
    p.add_argument(
        "--publish", action="store_true", help="list the mesh on the Nostr relays (--relay) so anyone finds it with mesh-llm discover (never the mesh secret)"
    )
    p.add_argument("--mesh-name", default="", help="the mesh's name in LAN announcements and its public listing (does not publish it)")
    p.add_argument("--region", default="", help="the region the public listing names, e.g. eu-west (--auto filters by it)")
    p.add_argument("--max-clients", type=int, default=0, help="clients the public listing admits: at that many it is delisted (default 0: no limit)")
    p.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="URL",
        help="Nostr relay (ws:// or wss://) for --publish and discover, repeatable (default: MESH_GATEWAY_RELAYS, else relay.damus.io and nos.lol)",
    )
    p.add_argument(
        "--draft",
        nargs="?",
        const=DRAFT,
        metavar="PATH|NAME",
        help="draft model for speculative decoding of the --model models: catalog name, GGUF path or a file in ~/.models "
        "(default: the catalog's draft when on disk; llama-server --spec-draft-model); download: also fetch the model's catalog draft",
    )
    p.add_argument("--no-draft", action="store_true", help="serve without a draft model, even the catalog's")
    p.add_argument(
        "--spec",
        default=Speculation.NONE,
        choices=[str(kind) for kind in Speculation],
        help="draft-free speculative decoding, llama.cpp's n-gram types (llama-server --spec-type): the next tokens looked up in the "
        "context, for answers that repeat their prompt such as code edits (default none)",
    )
    p.add_argument(
        "--join-nearby",
        nargs="?",
        const="any",
        metavar="MESH",
        help="find a mesh on the LAN and ask to join it, no token to copy: a member approves the code both machines show and this node "
        "gets its own revocable credential (MESH: the mesh's name or id, when several are heard)",
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="with claude|goose|opencode|pi: save the agent's config for the mesh (its own files, the old ones kept) instead of launching it",
    )
    p.add_argument("--nodes", type=int, default=2, help="moe check: how many shards to plan (default 2)")
    p.add_argument("--min-agreement", type=float, default=60.0, help="moe check: top-1 agreement (%%) every shard needs (default 60)")
    return p


@dataclass(frozen=True)
class Options:
    args: argparse.Namespace
    models: tuple[ModelRef, ...]  # the --model models on disk
    token: InviteToken | None = None
    fetching: tuple[NotDownloaded, ...] = ()  # the --model models the node downloads first
    passed: tuple[str, ...] = ()  # a coding agent's own arguments (those after --)


def check(argv: list[str]) -> Options:
    """Parsed and checked options, or UsageError with the reason."""
    head, passed = split_passed(argv)
    args = parser().parse_args(head)
    if args.command and args.command[0] in AGENTS:
        return check_agent(args, passed)
    if passed is not None:
        args = parser().parse_args(argv)  # "--" means what argparse says it means for everything else
    if args.write:
        raise UsageError(f"--write saves a coding agent's config: mesh-llm {'|'.join(AGENTS)} --write")
    if args.command:
        command = args.command[0]
        if command in NOT_BUILT_COMMANDS:
            raise UsageError(f"'{command}' is not built yet")
        if command not in COMMANDS:
            raise UsageError(f"unknown command '{command}'")
        return Options(args, ())
    token = token_of(args)
    if args.client and args.model:
        raise UsageError("--client serves no model: drop --model or --client")
    if args.client and args.standby:
        raise UsageError("--client offers no memory, --standby offers it: pick one")
    if args.join and args.join_nearby:
        raise UsageError("--join TOKEN and --join-nearby both name a mesh to join: pick one")
    if args.auto and (args.join or args.join_nearby):
        raise UsageError(f"--auto finds a mesh to join, {'--join TOKEN' if args.join else '--join-nearby'} names one: pick one")
    if args.client and not (args.join or args.join_nearby or args.auto or joined_before(args)):
        raise UsageError("--client needs --join TOKEN, --join-nearby or --auto: a client node uses the models of a mesh")
    for flag, label in NOT_BUILT_YET.items():
        if getattr(args, flag):
            raise UsageError(f"{label} is not built yet")
    if args.tag or args.since or args.author or args.limit is not None or args.mcp or args.dir:
        raise UsageError("--tag, --since, --from, --limit, --mcp and --dir are for mesh-llm blackboard")
    check_speculation(args)
    check_publicity(args)
    if args.listen_all and not args.api_key:
        raise UsageError("--listen-all exposes the API to other machines: it needs --api-key")
    if args.host and not is_loopback(args.host) and not args.api_key:
        raise UsageError(f"--host {args.host} exposes the API to other machines: it needs --api-key (the console stays on 127.0.0.1)")
    if args.max_vram is not None and args.max_vram <= 0:
        raise UsageError("--max-vram must be a positive number of GB")
    if args.ctx_size < 0 or args.parallel < 0:
        raise UsageError("--ctx-size and --parallel must be positive (0: sized from memory)")
    if args.port == args.console:
        raise UsageError("--port and --console must differ")
    for name, port in (("--port", args.port), ("--console", args.console)):
        if not 0 < port < 65536:
            raise UsageError(f"{name} {port} is not a valid port")
        host = api_host(args) if name == "--port" else console_host(args)
        if not port_free(host, port):
            raise UsageError(f"{name} {port} is already in use")
    if not 0 <= args.bind_port < 65536:
        raise UsageError(f"--bind-port {args.bind_port} is not a valid port")
    models, fetching = models_of(args)
    return Options(args, models, token, fetching)


def split_passed(argv: list[str]) -> tuple[list[str], tuple[str, ...] | None]:
    """The arguments before the first --, and those after it (None without one)."""
    if "--" not in argv:
        return argv, None
    at = argv.index("--")
    return argv[:at], tuple(argv[at + 1 :])


def check_agent(args: argparse.Namespace, passed: tuple[str, ...] | None) -> Options:
    """`mesh-llm AGENT [--model M] [--write] [-- ARGS]`: one model at most, the agent's own arguments
    after --, a token that decodes; the node flags the launcher may need for a client node of its own."""
    agent = args.command[0]
    if args.command[1:]:
        raise UsageError(f"the agent's own arguments go after --: mesh-llm {agent} -- {' '.join(args.command[1:])}")
    if len(args.model) > 1:
        raise UsageError(f"an agent uses one model: pass --model once (mesh-llm {agent} --model NAME)")
    if args.write and passed:
        raise UsageError("--write saves the config and launches nothing: drop the arguments after --")
    if args.join_nearby:
        raise UsageError(f"--join-nearby waits for a member's approval: pair first (mesh-llm --client --join-nearby), then run mesh-llm {agent}")
    token = token_of(args)
    for name, port in (("--port", args.port), ("--console", args.console)):
        if not 0 < port < 65536:
            raise UsageError(f"{name} {port} is not a valid port")
    check_relays(args.relay)
    return Options(args, (), token, passed=passed or ())


def token_of(args: argparse.Namespace) -> InviteToken | None:
    """The --join token, decoded (UsageError in one line when it is not one), or None."""
    if not args.join:
        return None
    try:
        return decode(args.join)
    except TokenError as bad:
        raise UsageError(str(bad)) from None


def joined_before(args: argparse.Namespace) -> bool:
    """Whether the home holds a credential from pairing or a public token, with members to dial."""
    stored = mesh_identity.load(args.home or NodeSettings().home)
    return stored is not None and not stored.member and bool(stored.addresses)


def models_of(args: argparse.Namespace) -> tuple[tuple[ModelRef, ...], tuple[NotDownloaded, ...]]:
    """The --model models on disk, and those on the Hub that the node fetches first (all of them
    or UsageError with --download never)."""
    models: list[ModelRef] = []
    fetching: list[NotDownloaded] = []
    for spec in args.model:
        try:
            models.append(resolve(spec, args.models_dir))
        except NotDownloaded as missing:
            if args.download == DownloadPolicy.NEVER:
                raise UsageError(f"{missing} (--download never)") from None
            fetching.append(missing)
        except ModelError as bad:
            raise UsageError(str(bad)) from None
    return tuple(models), tuple(fetching)


def draft_of(args: argparse.Namespace) -> str:
    """The draft model --draft names ('' for none named: the catalog's draft, unless --no-draft)."""
    return "" if args.draft in (None, DRAFT) else args.draft


def check_speculation(args: argparse.Namespace) -> None:
    """--draft names a model file this node has, and does not contradict --no-draft or --client."""
    draft = draft_of(args)
    if draft and args.no_draft:
        raise UsageError("--draft names a draft model, --no-draft turns drafts off: pick one")
    if args.client and (draft or args.spec != Speculation.NONE):
        raise UsageError("--client serves no model: --draft and --spec are for nodes that serve")
    if draft:
        try:
            resolve(draft, args.models_dir)
        except ModelError as bad:
            raise UsageError(f"--draft: {bad}") from None


def check_publicity(args: argparse.Namespace) -> None:
    """--mesh-name and --region are text a listing's readers accept; --max-clients a count."""
    for flag, value in (("--mesh-name", args.mesh_name), ("--region", args.region)):
        if not value.isprintable() or len(value) > MAX_STRING:
            raise UsageError(f"{flag} must be printable text of at most {MAX_STRING} characters")
    if not 0 <= args.max_clients <= MAX_COUNT:
        raise UsageError("--max-clients must be a number of clients, 0 for no limit")
    check_relays(args.relay)


def check_relays(relays: list[str]) -> None:
    for url in relays:
        if not url.startswith(("ws://", "wss://")) or len(url) <= len("wss://"):
            raise UsageError(f"--relay {url} is not a relay URL (ws://HOST[:PORT] or wss://HOST[:PORT])")


def relays_of(args: argparse.Namespace) -> list[str]:
    """The Nostr relays of --relay, else of MESH_GATEWAY_RELAYS, else the gateway's default ones."""
    return list(args.relay) or GatewaySettings().relays


def api_host(args: argparse.Namespace) -> str:
    """Where the API binds: every interface with --listen-all, else --host, else loopback."""
    return "0.0.0.0" if args.listen_all else (args.host or "127.0.0.1")


def console_host(args: argparse.Namespace) -> str:
    """Where the console binds: --host when that is a loopback address (test meshes), else 127.0.0.1:
    the console shows the invite token, which carries the mesh secret."""
    return args.host if args.host and is_loopback(args.host) else "127.0.0.1"


def port_free(host: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(family_of(host), kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def fail(message: str) -> NoReturn:
    print(f"mesh-llm: error: {message}", file=sys.stderr)
    raise SystemExit(2)

"""Entry point of `mesh-llm`: check flags, build each service's settings, run the node."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import psutil

from services.cli import admin
from services.cli.flags import AGENTS, Options, UsageError, api_host, check, console_host, draft_of, fail, port_free, relays_of
from services.cli.node import Node
from services.common import addresses, node_identity
from services.common.invite import InviteToken
from services.common.mesh_identity import mesh_of
from services.common.ports import free_udp_port, reserve_tcp_port
from services.common.records import DownloadPolicy, JoinState
from services.common.settings import NodeSettings, environment_for
from services.gateway.settings import GatewaySettings
from services.gossip.settings import PROFILES, GossipSettings
from services.placement.settings import PlacementSettings
from services.runner import binaries
from services.runner.command import Speculation
from services.runner.settings import RunnerSettings

GB = 10**9
NODE_START_S = 60.0  # seconds a started node may take before its console answers (a loaded machine starts four Python services)


def advertised_addresses(args: argparse.Namespace, quic_host: str, quic_port: int) -> tuple[str, ...]:
    """Where peers dial this node, the one gossip tells first: --advertise, else the bound address,
    else every non-loopback interface address (the host name's address is loopback on Debian)."""
    if args.advertise:
        return (args.advertise,)
    return addresses.advertised(interface_addresses(), quic_host, quic_port)


def interface_addresses() -> list[addresses.InterfaceAddress]:
    """This machine's interface addresses (psutil, already ours, lists them as ifaddr does)."""
    return [
        addresses.InterfaceAddress(name, entry.address)
        for name, entries in psutil.net_if_addrs().items()
        for entry in entries
        if entry.family in (socket.AF_INET, socket.AF_INET6)
    ]


def lends_memory(options: Options) -> bool:
    """Whether this node may run llama.cpp: it serves models or offers its memory to a mesh."""
    args = options.args
    return not args.client and bool(options.models or options.fetching or args.join or args.join_nearby or args.auto or args.standby)


def rpc_host(quic_host: str) -> str:
    """Where a split's TLS rpc-servers listen: where the QUIC endpoint does (an IPv4 address or
    all interfaces: llama.cpp's RPC speaks IPv4 only); else loopback, reached through tunnels."""
    if quic_host in ("", "::"):
        return "0.0.0.0"
    return quic_host if "." in quic_host else "127.0.0.1"


def settings_for(
    options: Options, home: Path, quic_port: int, advertised: tuple[str, ...], llama_bin: Path | None = None, seeds: tuple[str, ...] = ()
) -> dict[str, dict[str, str]]:
    """The environment of each service, built once from the flags; `seeds`: the members pairing named."""
    args = options.args
    node_fields = {
        "gateway_grpc_port": reserve_tcp_port(),
        "gossip_grpc_port": reserve_tcp_port(),
        "placement_grpc_port": reserve_tcp_port(),
        "runner_grpc_port": reserve_tcp_port(),
        "gossip_metrics_port": reserve_tcp_port(),
        "placement_metrics_port": reserve_tcp_port(),
        "runner_metrics_port": reserve_tcp_port(),
        "log_level": args.log_level,
        "home": home,
    }
    if args.name:
        node_fields["name"] = args.name
    node = environment_for(NodeSettings(**node_fields))
    services = {
        "runner": RunnerSettings(
            device=args.device,
            llama_bin=llama_bin,
            speculation=Speculation(args.spec),
            ctx_size=args.ctx_size,
            parallel=args.parallel,
            kv_type=args.cache_type,
            max_memory_bytes=int(args.max_vram * GB) if args.max_vram else 0,
            rpc_host=rpc_host(args.host or "0.0.0.0"),
        ),
        "gossip": GossipSettings(
            profile=args.profile,
            seeds=list(options.token.bootstrap) if options.token else list(seeds),
            address=advertised[0],
            join_timeout=args.join_timeout,
            mesh_name=args.mesh_name,
            region=args.region,
            max_clients=args.max_clients,
            publish=args.publish,
            blackboard=args.blackboard,
        ),
        "placement": PlacementSettings(
            models=list(args.model),
            models_dir=args.models_dir,
            client=args.client,
            split=args.split,
            standby=args.standby,
            draft=draft_of(args),
            catalog_drafts=not args.no_draft,
            download=DownloadPolicy(args.download),
            max_memory_bytes=int(args.max_vram * GB) if args.max_vram else 0,
        ),
        "gateway": GatewaySettings(
            api_host=api_host(args),
            api_port=args.port,
            api_key=args.api_key,
            api_enabled=bool(options.models or options.fetching) or args.client or args.standby or bool(args.join or args.join_nearby or args.auto),
            console_host=console_host(args),
            console_port=args.console,
            peer_host=args.host or "0.0.0.0",
            peer_port=quic_port,
            invite_addresses=list(advertised),
            announce=not args.no_announce,
            relays=relays_of(args),
        ),
    }
    return {service: node | environment_for(settings) for service, settings in services.items()}


def banner(options: Options, token: str) -> str:
    args = options.args
    host = api_host(args)
    joined_as = "a public-join token" if args.auto else "pairing"
    invite = f"invite token (mesh-llm --join TOKEN): {token}" if token else f"joined by {joined_as}: members invite others (mesh-llm admin pending, approve)"
    lines = [f"  console: http://{console_host(args)}:{args.console}", f"  {invite}"]
    if options.models or options.fetching:
        lines.insert(0, f"mesh-llm: serving {', '.join([*(model.model_id for model in options.models), *(model.model_id for model in options.fetching)])}")
        lines.insert(1, f"  API: http://{host}:{args.port}/v1")
        for missing in options.fetching:
            size = f" ({missing.size_bytes / 1e9:.2f} GB)" if missing.size_bytes else ""
            lines.append(f"  downloading {missing.model_id}{size}: served once it is on disk; progress on the console and /api/status")
    elif args.client or args.join or args.join_nearby or args.auto:
        lines.insert(0, f"mesh-llm: {'client node' if args.client else 'node'} joining the mesh")
        lines.insert(1, f"  API: http://{host}:{args.port}/v1")
    else:
        lines.insert(0, "mesh-llm: no model given, serving only the console.")
        lines.append("  start serving with: mesh-llm --model SmolLM2-135M-Instruct")
    return "\n".join(lines)


def wait_for_join(console: str, stop_requested: list[int], timeout: float, start_s: float = NODE_START_S) -> str:
    """'' once the node has joined, else why it could not. The gossip service gives up on its own,
    `timeout` after this node's gateway answers: the wait here is a backstop that counts from the
    console's first answer too (a loaded machine may take many seconds to start the services)."""
    deadline = time.monotonic() + start_s + timeout + 10
    answered = False
    while not stop_requested and time.monotonic() < deadline:
        try:
            status = httpx.get(f"{console}/api/status", timeout=5).json()
            if not answered:
                answered = True
                deadline = time.monotonic() + timeout + 10
            if status["join_state"] == JoinState.JOINED:
                return ""
            if status["join_state"] == JoinState.FAILED:
                return status["join_error"] or "no answer"
        except (httpx.HTTPError, ValueError, KeyError):
            # The console is not up yet: keep waiting until the deadline.
            pass
        time.sleep(0.2)
    if stop_requested:
        return ""
    return "no answer from the mesh" if answered else f"the node's console did not answer within {start_s:.0f} s"


def run() -> None:
    try:
        options = check(sys.argv[1:])
        # Each command's module is imported when it is run: a node's start (and every CLI call)
        # pays ~1.5 s of CPU for imports on a small machine, and most of it is other commands'.
        if options.args.command and options.args.command[0] == "moe":
            from services.cli import moe_check

            sys.exit(moe_check.run(options.args))
        if options.args.command and options.args.command[0] in ("download", "models"):
            from services.cli import model_files

            sys.exit(model_files.run(options.args))
        if options.args.command and options.args.command[0] == "discover":
            from services.cli import discover

            sys.exit(discover.run(options.args))
        if options.args.command and options.args.command[0] in AGENTS:
            from services.cli.agents import launcher

            sys.exit(launcher.run(options))
        if options.args.command and options.args.command[0] == "blackboard":
            from services.cli import blackboard

            sys.exit(blackboard.run(options.args))
        if options.args.command:
            admin.run(options.args)
            return
        # Any node that may run llama (its models, or memory lent to the mesh) needs the binaries;
        # the folder is decided here, once, for the runner.
        llama_bin = binaries.required(binaries.folder_of(RunnerSettings().llama_bin, NodeSettings().cache)) if lends_memory(options) else None
        args = options.args
        quic_host = args.host or "0.0.0.0"
        quic_port = args.bind_port or free_udp_port(quic_host)
        if args.bind_port and not port_free(quic_host, quic_port, socket.SOCK_DGRAM):
            raise UsageError(f"--bind-port {quic_port} is already in use")
    except (UsageError, binaries.BinaryMissing) as bad:
        fail(str(bad))
    home = args.home or NodeSettings().home
    try:
        if args.join_nearby:
            from services.cli import nearby

            seeds = nearby.pair(home, args.join_nearby, args.name)
        else:
            seeds = ()
        if args.auto:
            from services.cli import auto

            found = auto.decide(options, home)
            if isinstance(found, auto.Joining):
                seeds = found.seeds
            else:
                options = found.options
    except UsageError as bad:
        fail(str(bad))
    mesh = mesh_of(home, options.token)
    if not (seeds or options.token or mesh.member):
        seeds = mesh.addresses  # a paired or public node started again: the members it was given last time
    me = node_identity.load_or_create(home)
    advertised = advertised_addresses(args, quic_host, quic_port)
    token = InviteToken(mesh.mesh_id, mesh.secret, advertised, me.fingerprint).encode() if mesh.member else ""
    stop_requested: list[int] = []
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda received, _frame: stop_requested.append(received))
    environments = settings_for(options, home, quic_port, advertised, llama_bin, seeds)
    admin.save_ports(home, environments, advertised, args.console, console_host(args))
    node = Node(environments)
    node.start()
    print(banner(options, token), flush=True)
    code = 0
    try:
        if options.token or seeds:
            timeout = args.join_timeout or PROFILES[args.profile].join_timeout
            reason = wait_for_join(f"http://{console_host(args)}:{args.console}", stop_requested, timeout)
            if reason:
                print(f"mesh-llm: error: could not join the mesh: {reason}", file=sys.stderr)
                code = 2
        if code == 0:
            code = node.wait(stop_requested)
    finally:
        node.stop()
    raise SystemExit(code)

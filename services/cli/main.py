"""Entry point of `mesh-llm`: check flags, build each service's settings, run the node."""

from __future__ import annotations

import signal
import sys

from services.cli.flags import Options, UsageError, check, fail
from services.cli.node import Node
from services.common.settings import NodeSettings, environment_for
from services.gateway.settings import GatewaySettings
from services.gossip.settings import GossipSettings
from services.placement.settings import PlacementSettings
from services.runner import binaries
from services.runner.settings import RunnerSettings
from services.runner.supervisor import free_port

GB = 10**9


def settings_for(options: Options) -> dict[str, dict[str, str]]:
    """The environment of each service, built once from the flags."""
    args = options.args
    node_fields = {"gateway_grpc_port": free_port(), "gossip_grpc_port": free_port(),
                   "placement_grpc_port": free_port(), "runner_grpc_port": free_port(), "log_level": args.log_level}
    if args.name:
        node_fields["name"] = args.name
    if args.home:
        node_fields["home"] = args.home
    node = environment_for(NodeSettings(**node_fields))
    runner = RunnerSettings(device=args.device)
    placement = PlacementSettings(
        models=list(args.model), models_dir=args.models_dir,
        max_memory_bytes=int(args.max_vram * GB) if args.max_vram else 0,
    )
    gateway = GatewaySettings(
        api_host="0.0.0.0" if args.listen_all else "127.0.0.1", api_port=args.port, api_key=args.api_key,
        api_enabled=bool(options.models), console_port=args.console,
    )
    services = {"runner": runner, "gossip": GossipSettings(), "placement": placement, "gateway": gateway}
    return {service: node | environment_for(settings) for service, settings in services.items()}


def banner(options: Options) -> str:
    args = options.args
    console = f"console: http://127.0.0.1:{args.console}"
    if not options.models:
        return f"mesh-llm: no model given, serving only the console.\n  {console}\n  start serving with: mesh-llm --model SmolLM2-135M-Instruct"
    names = ", ".join(model.model_id for model in options.models)
    host = "0.0.0.0" if args.listen_all else "127.0.0.1"
    return f"mesh-llm: serving {names}\n  API: http://{host}:{args.port}/v1\n  {console}"


def run() -> None:
    try:
        options = check(sys.argv[1:])
        if options.models:
            binaries.binary("llama-server", RunnerSettings().llama_bin)
    except (UsageError, binaries.BinaryMissing) as bad:
        fail(str(bad))
    stop_requested: list[int] = []
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda received, _frame: stop_requested.append(received))
    node = Node(settings_for(options))
    node.start()
    print(banner(options), flush=True)
    try:
        code = node.wait(stop_requested)
    finally:
        node.stop()
    raise SystemExit(code)

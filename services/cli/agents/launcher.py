"""`mesh-llm claude|goose|opencode|pi [--model M] [--write] [-- ARGS]`: an agent on the mesh.

Asks the gateway on --port which models the mesh serves; when nothing answers there, starts a client
node of its own (the mesh of --join, else the mesh this home joined before, else --auto), logging to
<home>/agent-node.log, and stops it when the agent exits. Then picks the model (choice.py), writes
what the agent reads only from files (configs.py, with a backup of the user's file) and runs the
agent with ARGS in its environment: its exit code is ours. With --write it only saves the agent's
config for later and says where.

Owns the agent and client-node child processes and the config files it writes; what goes in them
is configs.py's, which model choice.py's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from services.cli.agents import choice, configs
from services.cli.agents.configs import Agent, Endpoint, Places
from services.cli.flags import Options, UsageError, console_host, joined_before
from services.common.children import die_with_parent
from services.common.settings import NodeSettings
from services.gossip.settings import PROFILES

NODE_LOG = "agent-node.log"
NODE_READY_S = 90.0  # seconds, beyond the join timeout, for a started client node to list a model (--auto reads the LAN and relays first)
NODE_STOP_S = 30.0  # seconds a stopped client node gets to leave the mesh before SIGKILL
INSTALL = {
    Agent.CLAUDE: ("claude", "npm install -g @anthropic-ai/claude-code"),
    Agent.GOOSE: ("goose", "see https://block.github.io/goose/docs/getting-started/installation"),
    Agent.OPENCODE: ("opencode", "npm install -g opencode-ai"),
    Agent.PI: ("pi", "npm install -g @mariozechner/pi-coding-agent"),
}


def run(options: Options) -> int:
    args = options.args
    agent = Agent(args.command[0])
    endpoint_root = gateway_root(args)
    key = args.api_key or configs.DUMMY_KEY
    where = configs.places(os.environ, Path.home())
    listing = models_listing(endpoint_root, key)
    if args.write:
        model = args.model[0] if listing is None and args.model else pick_model(args, listing)
        return write(agent, Endpoint(endpoint_root, model, key), where)
    program, hint = INSTALL[agent]
    executable = shutil.which(program)
    if executable is None:
        raise UsageError(f"{program} is not installed (not on PATH): {hint}")
    node = start_client_node(args) if listing is None else None
    try:
        if node is not None:
            listing = wait_for_models(node, args, endpoint_root, key)
        endpoint = Endpoint(endpoint_root, pick_model(args, listing), key)
        try:
            plan = configs.launch(agent, endpoint, where, existing_texts(configs.read_first(agent, where)))
        except configs.ConfigError as bad:
            raise UsageError(str(bad)) from None
        for line in write_files(plan.files):
            print(f"mesh-llm: {line}", file=sys.stderr)
        print(f"mesh-llm: {program} on {endpoint.model} through {endpoint_root}/v1", file=sys.stderr, flush=True)
        return run_agent([executable, *plan.args, *options.passed], agent_environment(os.environ, plan))
    finally:
        if node is not None:
            stop_node(node)


def gateway_root(args: argparse.Namespace) -> str:
    """The local gateway's root URL: --host when given (test meshes), else loopback, at --port."""
    host = args.host if args.host and args.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{args.port}"


def models_listing(root: str, key: str) -> dict | None:
    """GET /v1/models, or None when nothing answers there (a refused key is the user's to fix)."""
    try:
        answer = httpx.get(f"{root}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=3)
    except httpx.HTTPError:
        return None
    if answer.status_code == 401:
        raise UsageError(f"the node at {root} wants an API key: pass its --api-key")
    if answer.status_code != 200:
        return None
    return answer.json()


def pick_model(args: argparse.Namespace, listing: dict | None) -> str:
    if listing is None:
        raise UsageError(f"no node answers on {gateway_root(args)} to pick a model from: start one, or pass --model")
    status = console_status(f"http://{console_host(args)}:{args.console}")
    try:
        return choice.choose(args.model[0] if args.model else "", choice.served_models(listing, status))
    except choice.NoModel as missing:
        raise UsageError(str(missing)) from None


def console_status(console: str) -> dict | None:
    """The console's /api/status (model sizes), or None: the choice then goes by name alone."""
    try:
        return httpx.get(f"{console}/api/status", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return None


def node_argv(args: argparse.Namespace, joined: bool) -> list[str]:
    """The client node's flags: the launcher's ports and home, and the mesh to join: --join's, else
    the one this home joined before (`joined`), else whatever --auto finds."""
    argv = ["--client", "--port", str(args.port), "--console", str(args.console), "--profile", args.profile, "--log-level", args.log_level]
    for flag, value in (("--home", args.home), ("--host", args.host), ("--api-key", args.api_key), ("--name", args.name)):
        if value:
            argv += [flag, str(value)]
    if args.join_timeout:
        argv += ["--join-timeout", str(args.join_timeout)]
    if args.no_announce:
        argv.append("--no-announce")
    for relay in args.relay:
        argv += ["--relay", relay]
    if args.join:
        return [*argv, "--join", args.join]
    return argv if joined else [*argv, "--auto"]


def start_client_node(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    home = args.home or NodeSettings().home
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / NODE_LOG
    how = "--join" if args.join else ("the mesh it joined before" if joined_before(args) else "--auto")
    print(f"mesh-llm: no node answers on {gateway_root(args)}: starting a client node ({how}), log in {log_path}", file=sys.stderr, flush=True)
    entry = [sys.executable, "-c", "from services.cli.main import run; run()"]
    with log_path.open("ab") as log:
        # Its own session: the terminal's Ctrl-C belongs to the agent; we stop the node ourselves after.
        return subprocess.Popen(
            die_with_parent([*entry, *node_argv(args, joined_before(args))], "TERM"), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for_models(node: subprocess.Popen[bytes], args: argparse.Namespace, root: str, key: str) -> dict:
    """The node's /v1/models once it lists a ready model (the one --model names, if any)."""
    patience = (args.join_timeout or PROFILES[args.profile].join_timeout) + NODE_READY_S
    deadline = time.monotonic() + patience
    home = args.home or NodeSettings().home
    wanted = args.model[0].lower() if args.model else ""
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise UsageError(f"the client node exited with code {node.returncode}: {last_line(home / NODE_LOG)}")
        listing = models_listing(root, key)
        if listing and any(model.ready and wanted in model.model_id.lower() for model in choice.served_models(listing, None)):
            return listing
        time.sleep(0.5)
    raise UsageError(f"the client node listed no ready model within {patience:.0f} s: see {home / NODE_LOG}")


def last_line(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].removeprefix("mesh-llm: error: ") if lines else "no output"


def stop_node(node: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the node leaves the mesh and stops its services), then SIGKILL to its group."""
    if node.poll() is None:
        node.send_signal(signal.SIGTERM)
    try:
        node.wait(NODE_STOP_S)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


def agent_environment(environ: Mapping[str, str], plan: configs.Launch) -> dict[str, str]:
    return {name: value for name, value in environ.items() if name not in plan.unset} | dict(plan.env)


def run_agent(argv: list[str], env: dict[str, str]) -> int:
    """Run the agent in the foreground; its exit code (128+N for a signal N, as a shell says)."""
    agent = subprocess.Popen(argv, env=env)
    # The terminal's Ctrl-C reaches the agent itself (same process group): it decides what it means.
    # A handler, not SIG_IGN, which the agent would inherit. SIGTERM for us is passed on to it.
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, lambda _number, _frame: None),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda number, _frame: agent.send_signal(number)),
    }
    try:
        code = agent.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 128 - code if code < 0 else code


def existing_texts(paths: tuple[Path, ...]) -> dict[Path, str]:
    return {path: path.read_text() for path in paths if path.is_file()}


def write_files(files: Mapping[Path, str]) -> list[str]:
    """Write each file whose text changes, keeping the old one beside it; one line each saying where."""
    lines = []
    for path, text in files.items():
        old = path.read_text() if path.is_file() else None
        if old == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = ""
        if old is not None:
            backup = backup_path(path, time.strftime("%Y%m%d-%H%M%S"))
            backup.write_text(old)
            kept = f" (the previous one kept as {backup})"
        path.write_text(text)
        lines.append(f"wrote {path}{kept}")
    return lines


def backup_path(path: Path, stamp: str) -> Path:
    """A name beside `path` that no earlier backup holds."""
    candidate, number = path.with_name(f"{path.name}.{stamp}.bak"), 1
    while candidate.exists():
        candidate, number = path.with_name(f"{path.name}.{stamp}-{number}.bak"), number + 1
    return candidate


def write(agent: Agent, endpoint: Endpoint, where: Places) -> int:
    """--write: the agent's config files merged with ours, and what it still needs in the shell."""
    try:
        plan = configs.saved(agent, endpoint, where, existing_texts(configs.read_first(agent, where)))
    except configs.ConfigError as bad:
        raise UsageError(str(bad)) from None
    lines = write_files(plan.files) or [f"{', '.join(str(path) for path in plan.files)} already point at the mesh"]
    for line in lines:
        print(f"mesh-llm: {line}")
    print(f"mesh-llm: {agent} now uses {endpoint.model} through {endpoint.base_url}/v1 when started by hand")
    for name, value in plan.exports.items():
        print(f"mesh-llm: {agent} reads {name} only from its keyring or environment: export {name}={value}")
    return 0

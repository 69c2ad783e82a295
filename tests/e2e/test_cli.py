"""The CLI's answers to bad input (one line, exit 2, nothing started) and its console-only mode."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from services.common.invite import InviteToken, new_secret
from tests.nodes import MESH_LLM, free_port

pytestmark = pytest.mark.e2e

GOOD_TOKEN = InviteToken("0123456789abcdef", new_secret(), ("127.0.0.9:9",), "f" * 64).encode()


def run_cli(*args: str, mark: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI's result; `mark` tags it and every process it starts (MESH_TEST_MARK in their environment)."""
    env = os.environ | ({"MESH_TEST_MARK": mark} if mark else {})
    return subprocess.run([str(MESH_LLM), *args], capture_output=True, text=True, timeout=30, env=env)


def processes_marked(mark: str) -> list[psutil.Process]:
    """Live processes started by a run_cli(mark=...), whatever else this machine runs (tests run in parallel)."""
    marked = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("MESH_TEST_MARK") == mark:
                marked.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return marked


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "/nowhere/model.gguf"], "does not exist"),
        (["--model", "no-such-model"], "not found"),
        (["--listen-all"], "--api-key"),
        (["--join", "TOKEN"], "not a mesh-llm invite token"),
        (["--join", GOOD_TOKEN[:-6]], "truncated or altered"),
        (["--join", GOOD_TOKEN[:20] + ("A" if GOOD_TOKEN[20] != "A" else "B") + GOOD_TOKEN[21:]], "truncated or altered"),
        (["--join", "mesh1-!!!"], "copy it again"),
        (["--client"], "--join"),
        (["--auto", "--join-nearby"], "--auto finds a mesh to join, --join-nearby names one: pick one"),
        (["--client", "--standby", "--join", GOOD_TOKEN], "pick one"),
        (["--max-vram", "-1"], "positive"),
        (["--port", "70000"], "not a valid port"),
        (["--bogus"], "unrecognized arguments"),
        (["moe", "check", "no-such-model"], "not found"),
        (["moe"], "usage: mesh-llm moe check"),
        (["drop", "x", "--home", "/nonexistent-home"], "no node has run"),
        (["rotate-key", "--home", "/nonexistent-home"], "no node has run"),
        (["frobnicate"], "unknown command"),
        (["--host", "0.0.0.0"], "--api-key"),
        (["--draft", "no-such-model"], "--draft: model 'no-such-model' not found"),
        (["--draft", "SmolLM2", "--no-draft"], "pick one"),
        (["--spec", "draft-simple"], "invalid choice"),
        # The blackboard's commands, its MCP server and the agents' skill file.
        (["blackboard"], "usage: mesh-llm blackboard post TEXT"),
        (["blackboard", "search"], "usage: mesh-llm blackboard"),
        (["blackboard", "feed", "now"], "usage: mesh-llm blackboard"),
        (["blackboard", "post", "hi", "--since", "1h"], "--since, --from and --limit are for blackboard feed"),
        (["blackboard", "feed", "--since", "yesterday"], "--since yesterday: a time ago"),
        (["blackboard", "feed", "--limit", "0"], "--limit is a number of posts from 1 to 500"),
        (["blackboard", "post", "hi", "--home", "/nonexistent-home"], "no node has run"),
        (["blackboard", "install-skill", "now"], "usage: mesh-llm blackboard install-skill [--dir SKILLS]"),
        (["blackboard", "feed", "--dir", "skills"], "--dir is for blackboard install-skill"),
        (["blackboard", "--mcp", "--home", "/nonexistent-home"], "no node has run"),
        (["blackboard", "search", "x", "--mcp"], "blackboard --mcp takes no other words"),
        (["--since", "1h"], "are for mesh-llm blackboard"),
        # The coding-agent launchers: the agent's arguments after --, one model.
        (["opencode", "run"], "the agent's own arguments go after --"),
        (["claude", "--model", "a", "--model", "b"], "pass --model once"),
        (["goose", "--write", "--", "run"], "--write saves the config and launches nothing"),
        (["--write"], "--write saves a coding agent's config"),
        (["discover", "now"], "usage: mesh-llm discover"),
        (["--join-nearby", "no-such-mesh"], "no mesh 'no-such-mesh' found on the LAN"),
        (["--max-clients", "-1"], "--max-clients must be a number"),
        (["--mesh-name", "lab\x1b[2J"], "--mesh-name must be printable"),
        (["--region", "r" * 300], "--region must be printable text of at most 256"),
        (["--publish", "--relay", "https://relay.example"], "--relay https://relay.example is not a relay URL"),
        (["discover", "--relay", "relay.example"], "--relay relay.example is not a relay URL"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    mark = uuid.uuid4().hex
    result = run_cli(*args, mark=mark)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr
    assert processes_marked(mark) == []


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model")
    result = run_cli("--model", str(fake))
    assert result.returncode == 2 and "not a GGUF" in result.stderr


def test_a_port_in_use_is_refused() -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # free_port() holds it in TIME_WAIT until bound
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_cli("--port", str(port))
    assert result.returncode == 2 and "in use" in result.stderr


def test_no_arguments_prints_how_to_start_and_serves_only_the_console(start_node) -> None:
    node = start_node()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        node.check_alive()
        try:
            status = node.status()
            if status["id"]:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    assert status["models"] == [] and status["role"] == "standby"
    assert "--model" in node.log_path.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{node.api}/v1/models", timeout=2)
    assert node.interrupt() == 0

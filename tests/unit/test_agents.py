"""The coding-agent launchers: what each of the four agents is told (launch and --write), merged
into the user's files without losing their settings; which model it gets; the client node's flags;
the command line's checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli.agents import choice, configs, launcher
from services.cli.agents.choice import NoModel, Served
from services.cli.agents.configs import Agent, ConfigError, Endpoint, Places
from services.cli.flags import UsageError, check, parser

ENDPOINT = Endpoint("http://127.0.0.1:9337", "Qwen3-8B", "sekrit")
WHERE = configs.places({}, Path("/home/u"))


def test_each_agent_config_lives_where_the_agent_looks() -> None:
    assert WHERE == Places(
        Path("/home/u/.claude/settings.json"),
        Path("/home/u/.config/goose/config.yaml"),
        Path("/home/u/.config/opencode/opencode.json"),
        Path("/home/u/.pi/agent"),
    )
    moved = configs.places({"XDG_CONFIG_HOME": "/x", "CLAUDE_CONFIG_DIR": "/c", "PI_CODING_AGENT_DIR": "/p"}, Path("/home/u"))
    assert moved == Places(Path("/c/settings.json"), Path("/x/goose/config.yaml"), Path("/x/opencode/opencode.json"), Path("/p"))


@pytest.mark.parametrize(
    ("agent", "env", "unset", "args"),
    [
        (
            Agent.CLAUDE,
            {
                "ANTHROPIC_BASE_URL": "http://127.0.0.1:9337",  # Claude Code adds /v1/messages itself
                "ANTHROPIC_AUTH_TOKEN": "sekrit",
                "ANTHROPIC_MODEL": "Qwen3-8B",
                "ANTHROPIC_DEFAULT_HAIKU_MODEL": "Qwen3-8B",
                "ANTHROPIC_SMALL_FAST_MODEL": "Qwen3-8B",
                "API_TIMEOUT_MS": "3600000",
            },
            ("ANTHROPIC_API_KEY",),
            (),
        ),
        (
            Agent.GOOSE,
            {
                "GOOSE_PROVIDER": "openai",
                "GOOSE_MODEL": "Qwen3-8B",
                "OPENAI_HOST": "http://127.0.0.1:9337",
                "OPENAI_BASE_PATH": "v1/chat/completions",
                "OPENAI_API_KEY": "sekrit",
                "OPENAI_TIMEOUT": "3600",
            },
            ("OPENAI_BASE_URL",),
            (),
        ),
        (Agent.PI, {}, (), ("--provider", "mesh-llm", "--model", "Qwen3-8B")),
    ],
)
def test_a_launch_tells_each_agent_the_gateway_model_key_and_a_long_timeout(agent: Agent, env: dict, unset: tuple, args: tuple) -> None:
    plan = configs.launch(agent, ENDPOINT, WHERE, {})
    assert env.items() <= dict(plan.env).items() and plan.unset == unset and plan.args == args


def test_opencode_gets_an_inline_config_and_no_file_of_the_user_changes() -> None:
    plan = configs.launch(Agent.OPENCODE, ENDPOINT, WHERE, {})
    config = json.loads(plan.env["OPENCODE_CONFIG_CONTENT"])
    provider = config["provider"]["mesh-llm"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": "http://127.0.0.1:9337/v1", "apiKey": "sekrit", "timeout": 3_600_000}
    assert list(provider["models"]) == ["Qwen3-8B"]
    assert config["model"] == config["small_model"] == "mesh-llm/Qwen3-8B"
    assert plan.files == {}


def test_pi_gets_our_provider_added_to_its_models_file_beside_the_users() -> None:
    models = WHERE.pi_dir / "models.json"
    users = {"providers": {"ollama": {"baseUrl": "http://localhost:11434/v1", "models": [{"id": "llama3"}]}}}
    plan = configs.launch(Agent.PI, ENDPOINT, WHERE, {models: json.dumps(users)})
    written = json.loads(plan.files[models])
    assert written["providers"]["ollama"] == users["providers"]["ollama"]
    ours = written["providers"]["mesh-llm"]
    assert (ours["baseUrl"], ours["api"], ours["apiKey"], ours["models"]) == ("http://127.0.0.1:9337/v1", "openai-completions", "sekrit", [{"id": "Qwen3-8B"}])


def test_pi_keeps_what_the_user_set_for_our_model_and_drops_our_old_entries() -> None:
    models = WHERE.pi_dir / "models.json"
    ours = {"baseUrl": "http://10.0.0.2:9337/v1", "models": [{"id": "Qwen3-8B", "contextWindow": 8192, "maxTokens": 512}, {"id": "gone"}]}
    plan = configs.launch(Agent.PI, ENDPOINT, WHERE, {models: json.dumps({"providers": {"mesh-llm": ours}})})
    written = json.loads(plan.files[models])["providers"]["mesh-llm"]
    assert written["baseUrl"] == "http://127.0.0.1:9337/v1"
    assert written["models"] == [{"id": "Qwen3-8B", "contextWindow": 8192, "maxTokens": 512}]
    # Something else under our name (not an object, no models list) is simply replaced.
    for odd in ("text", {"models": "x"}, {"models": ["x", 3]}):
        plan = configs.launch(Agent.PI, ENDPOINT, WHERE, {models: json.dumps({"providers": {"mesh-llm": odd}})})
        assert json.loads(plan.files[models])["providers"]["mesh-llm"]["models"] == [{"id": "Qwen3-8B"}]


@pytest.mark.parametrize(
    ("agent", "files", "exports"),
    [
        (Agent.CLAUDE, {"/home/u/.claude/settings.json"}, {}),
        (Agent.GOOSE, {"/home/u/.config/goose/config.yaml"}, {"OPENAI_API_KEY": "sekrit"}),
        (Agent.OPENCODE, {"/home/u/.config/opencode/opencode.json"}, {}),
        (Agent.PI, {"/home/u/.pi/agent/models.json", "/home/u/.pi/agent/settings.json"}, {}),
    ],
)
def test_write_saves_each_agent_config_in_its_own_files(agent: Agent, files: set[str], exports: dict) -> None:
    plan = configs.saved(agent, ENDPOINT, WHERE, {})
    assert {str(path) for path in plan.files} == files and dict(plan.exports) == exports


def test_write_merges_into_the_users_files_keeping_their_settings() -> None:
    claude, opencode, pi_settings = WHERE.claude_settings, WHERE.opencode_config, WHERE.pi_dir / "settings.json"
    existing = {
        claude: json.dumps({"permissions": {"allow": ["Bash"]}, "env": {"FOO": "1"}}),
        opencode: json.dumps({"theme": "tokyonight", "provider": {"anthropic": {"options": {"timeout": 5}}}}),
        pi_settings: json.dumps({"theme": "dark", "defaultProvider": "anthropic"}),
    }
    settings = json.loads(configs.saved(Agent.CLAUDE, ENDPOINT, WHERE, existing).files[claude])
    assert settings["permissions"] == {"allow": ["Bash"]} and settings["env"]["FOO"] == "1"
    assert settings["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9337" and settings["env"]["ANTHROPIC_MODEL"] == "Qwen3-8B"
    config = json.loads(configs.saved(Agent.OPENCODE, ENDPOINT, WHERE, existing).files[opencode])
    assert config["theme"] == "tokyonight" and set(config["provider"]) == {"anthropic", "mesh-llm"} and config["model"] == "mesh-llm/Qwen3-8B"
    pi = json.loads(configs.saved(Agent.PI, ENDPOINT, WHERE, existing).files[pi_settings])
    assert pi == {"theme": "dark", "defaultProvider": "mesh-llm", "defaultModel": "Qwen3-8B"}


def test_goose_yaml_keeps_comments_and_other_keys_and_replaces_ours() -> None:
    users = "# my goose\nGOOSE_PROVIDER: anthropic\nextensions:\n  developer:\n    enabled: true\nGOOSE_MODEL: claude\n"
    text = configs.saved(Agent.GOOSE, ENDPOINT, WHERE, {WHERE.goose_config: users}).files[WHERE.goose_config]
    assert text.splitlines() == [
        "# my goose",
        'GOOSE_PROVIDER: "openai"',
        "extensions:",
        "  developer:",
        "    enabled: true",
        'GOOSE_MODEL: "Qwen3-8B"',
        'OPENAI_HOST: "http://127.0.0.1:9337"',
        'OPENAI_BASE_PATH: "v1/chat/completions"',
        "OPENAI_TIMEOUT: 3600",
    ]
    assert "sekrit" not in text  # the key is goose's keyring's or the shell's, never a plain file's


@pytest.mark.parametrize("text", ["{ // a comment\n}", "[1, 2]"])
def test_a_users_file_that_is_not_a_json_object_is_refused_not_overwritten(text: str) -> None:
    with pytest.raises(ConfigError, match="opencode.json"):
        configs.saved(Agent.OPENCODE, ENDPOINT, WHERE, {WHERE.opencode_config: text})


LISTING = {
    "data": [
        {"id": "SmolLM2-135M-Instruct", "nodes": [{"state": "ready"}]},
        {"id": "Qwen3-8B", "nodes": [{"state": "ready"}]},
        {"id": "Qwen3-32B", "nodes": [{"state": "starting"}]},
    ]
}
STATUS = {
    "models": [{"model_id": "SmolLM2-135M-Instruct", "size_bytes": 98_000_000}],
    "peers": [{"models": [{"model_id": "Qwen3-8B", "size_bytes": 5_000_000_000}, {"model_id": "Qwen3-32B", "size_bytes": 20_000_000_000}]}],
}


def test_served_models_carry_the_sizes_any_node_reports() -> None:
    assert choice.served_models(LISTING, STATUS) == [
        Served("SmolLM2-135M-Instruct", 98_000_000, True),
        Served("Qwen3-8B", 5_000_000_000, True),
        Served("Qwen3-32B", 20_000_000_000, False),
    ]


@pytest.mark.parametrize(
    ("wanted", "status", "picked"),
    [
        ("", STATUS, "Qwen3-8B"),  # the largest ready one; the 32B is still loading
        ("", None, "Qwen3-8B"),  # no sizes: the first name of the ready ones
        ("Qwen3-32B", STATUS, "Qwen3-32B"),  # named: even while it loads
        ("smollm", STATUS, "SmolLM2-135M-Instruct"),  # a part of one name, any case
    ],
)
def test_the_model_is_the_one_named_else_the_largest_ready(wanted: str, status: dict | None, picked: str) -> None:
    assert choice.choose(wanted, choice.served_models(LISTING, status)) == picked


@pytest.mark.parametrize(
    ("wanted", "served", "message"),
    [
        ("qwen3", choice.served_models(LISTING, None), "'qwen3' names 2 of them; the mesh serves: Qwen3-32B, Qwen3-8B, SmolLM2-135M-Instruct"),
        ("llama", choice.served_models(LISTING, None), "'llama' is not served"),
        ("", [], "serves no model yet"),
    ],
)
def test_a_model_not_served_is_one_line_naming_those_that_are(wanted: str, served: list[Served], message: str) -> None:
    with pytest.raises(NoModel, match=message):
        choice.choose(wanted, served)


@pytest.mark.parametrize(
    ("flags", "joined", "mesh"),
    [
        (["--join", "mesh1-TOKEN"], False, ["--join", "mesh1-TOKEN"]),
        ([], True, []),  # the mesh this home paired with or joined publicly: main dials its members
        ([], False, ["--auto"]),
    ],
)
def test_the_client_node_joins_the_token_else_the_saved_mesh_else_auto(flags: list[str], joined: bool, mesh: list[str]) -> None:
    args = parser().parse_args(["opencode", "--port", "9400", "--console", "3200", "--home", "/h", *flags])
    argv = launcher.node_argv(args, joined)
    assert argv[:5] == ["--client", "--port", "9400", "--console", "3200"] and argv[argv.index("--home") + 1] == "/h"
    assert [word for word in argv if word in ("--join", "mesh1-TOKEN", "--auto")] == mesh


def test_a_changed_file_is_written_with_the_old_one_kept_beside_it(tmp_path: Path) -> None:
    kept, fresh = tmp_path / "a" / "models.json", tmp_path / "b" / "new.json"
    kept.parent.mkdir()
    kept.write_text("old")
    lines = launcher.write_files({kept: "new", fresh: "first"})
    backups = list(kept.parent.glob("models.json.*.bak"))
    assert kept.read_text() == "new" and fresh.read_text() == "first" and [b.read_text() for b in backups] == ["old"]
    assert lines == [f"wrote {kept} (the previous one kept as {backups[0]})", f"wrote {fresh}"]
    assert launcher.write_files({kept: "new"}) == []  # unchanged: nothing written, no new backup
    assert launcher.backup_path(kept, backups[0].name.split(".")[2]) != backups[0]


def test_the_agent_environment_drops_what_would_override_ours() -> None:
    plan = configs.launch(Agent.CLAUDE, ENDPOINT, WHERE, {})
    env = launcher.agent_environment({"ANTHROPIC_API_KEY": "theirs", "PATH": "/bin"}, plan)
    assert "ANTHROPIC_API_KEY" not in env and env["PATH"] == "/bin" and env["ANTHROPIC_AUTH_TOKEN"] == "sekrit"


def test_the_agents_own_arguments_are_those_after_the_double_dash() -> None:
    options = check(["opencode", "--model", "smol", "--", "run", "--model", "x", "say hi"])
    assert options.args.command == ["opencode"] and options.args.model == ["smol"]
    assert options.passed == ("run", "--model", "x", "say hi")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["opencode", "run"], "the agent's own arguments go after --: mesh-llm opencode -- run"),
        (["pi", "--model", "a", "--model", "b"], "pass --model once"),
        (["goose", "--write", "--", "run"], "--write saves the config and launches nothing"),
        (["--write"], "--write saves a coding agent's config"),
        (["claude", "--join-nearby"], "pair first"),
        (["claude", "--join", "nonsense"], "not a mesh-llm invite token"),
    ],
)
def test_bad_agent_command_lines_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        check(argv)


@pytest.mark.parametrize(("script", "code"), [("exit 0", 0), ("exit 7", 7), ("kill -TERM $$", 128 + 15)])
def test_the_agents_exit_code_is_passed_through(script: str, code: int) -> None:
    assert launcher.run_agent(["sh", "-c", script], {"PATH": "/usr/bin:/bin"}) == code

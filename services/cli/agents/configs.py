"""What each coding agent reads to use the mesh: pure writers from the gateway's address, a model
and a key to the environment, arguments and files of Claude Code, goose, opencode and pi.

Each agent is told the same things in its own words: where the API is (Claude Code speaks Anthropic
Messages to `/v1/messages`, the others OpenAI chat completions under `/v1`), the model, a key (the
node's --api-key, else a dummy one: the gateway checks none then) and a timeout long enough for a
big model on a slow node. A launch prefers the environment (nothing of the user's is changed);
pi reads providers only from its models.json, so that file gets our provider added. `--write`
merges the same settings into each agent's own config file, keeping whatever else the user has there.

Owns the knowledge of each agent's settings; must not read or write files, the environment or
processes (launcher.py does, with what these return).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Agent(StrEnum):
    CLAUDE = "claude"
    GOOSE = "goose"
    OPENCODE = "opencode"
    PI = "pi"


PROVIDER = "mesh-llm"  # the provider name added to agents that keep a list of providers
DUMMY_KEY = "mesh-llm"  # agents refuse to start without a key; a gateway without --api-key checks none
TIMEOUT_S = 3600  # an hour: agents give up after 5-10 minutes, less than a big model on a CPU node may take to answer


class ConfigError(ValueError):
    """A config file of the user's that cannot be merged into; the message says which and why."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # the gateway's root, e.g. http://127.0.0.1:9337 (no /v1: each agent adds its own path)
    model: str  # the model id the gateway routes by
    key: str  # sent as a bearer token


@dataclass(frozen=True)
class Places:
    """Where each agent keeps its settings on this machine."""

    claude_settings: Path  # $CLAUDE_CONFIG_DIR/settings.json, else ~/.claude/settings.json
    goose_config: Path  # $XDG_CONFIG_HOME/goose/config.yaml, else ~/.config/goose/config.yaml
    opencode_config: Path  # $XDG_CONFIG_HOME/opencode/opencode.json, else ~/.config/opencode/opencode.json
    pi_dir: Path  # $PI_CODING_AGENT_DIR, else ~/.pi/agent (models.json, settings.json)


def places(environ: Mapping[str, str], home: Path) -> Places:
    """The config locations each agent itself would use, given its environment variables."""
    config_home = Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else home / ".config"
    claude_dir = Path(environ["CLAUDE_CONFIG_DIR"]) if environ.get("CLAUDE_CONFIG_DIR") else home / ".claude"
    pi_dir = Path(environ["PI_CODING_AGENT_DIR"]).expanduser() if environ.get("PI_CODING_AGENT_DIR") else home / ".pi" / "agent"
    return Places(claude_dir / "settings.json", config_home / "goose" / "config.yaml", config_home / "opencode" / "opencode.json", pi_dir)


@dataclass(frozen=True)
class Launch:
    """How to start the agent on the mesh."""

    env: Mapping[str, str]  # added to the agent's environment
    unset: tuple[str, ...] = ()  # taken out of it: the user's values would win over ours
    args: tuple[str, ...] = ()  # before the user's own arguments
    files: Mapping[Path, str] = field(default_factory=dict)  # written first (merged into what was there)


@dataclass(frozen=True)
class Saved:
    """What `--write` leaves for later launches of the agent by hand."""

    files: Mapping[Path, str]  # each file's new text (merged into what was there)
    exports: Mapping[str, str] = field(default_factory=dict)  # what the agent reads only from the environment


def read_first(agent: Agent, where: Places) -> tuple[Path, ...]:
    """The files whose current text the writers merge into (absent ones count as empty)."""
    return {
        Agent.CLAUDE: (where.claude_settings,),
        Agent.GOOSE: (where.goose_config,),
        Agent.OPENCODE: (where.opencode_config,),
        Agent.PI: (where.pi_dir / "models.json", where.pi_dir / "settings.json"),
    }[agent]


def launch(agent: Agent, endpoint: Endpoint, where: Places, existing: Mapping[Path, str]) -> Launch:
    """The environment, arguments and files that point `agent` at `endpoint`."""
    if agent == Agent.CLAUDE:
        return Launch(claude_env(endpoint), unset=("ANTHROPIC_API_KEY",))
    if agent == Agent.GOOSE:
        return Launch(goose_env(endpoint), unset=("OPENAI_BASE_URL",))
    if agent == Agent.OPENCODE:
        # The inline config is opencode's last layer: it wins over the user's files without touching them.
        return Launch({"OPENCODE_CONFIG_CONTENT": json.dumps(opencode_config(endpoint))})
    models = where.pi_dir / "models.json"
    return Launch({}, args=("--provider", PROVIDER, "--model", endpoint.model), files={models: merged_json(models, existing, pi_models_update(endpoint))})


def saved(agent: Agent, endpoint: Endpoint, where: Places, existing: Mapping[Path, str]) -> Saved:
    """The files (and variables) that make `agent` use `endpoint` when started by hand."""
    if agent == Agent.CLAUDE:
        path = where.claude_settings
        return Saved({path: merged_json(path, existing, lambda settings: settings.setdefault("env", {}).update(claude_env(endpoint)))})
    if agent == Agent.GOOSE:
        params: dict[str, str | int] = {name: value for name, value in goose_env(endpoint).items() if name != "OPENAI_API_KEY"}
        params["OPENAI_TIMEOUT"] = TIMEOUT_S  # goose parses it as a number from its YAML
        # goose keeps keys in the system keyring, read only by goose itself: the key stays a variable.
        return Saved({where.goose_config: merged_yaml(existing.get(where.goose_config, ""), params)}, {"OPENAI_API_KEY": endpoint.key})
    if agent == Agent.OPENCODE:
        path = where.opencode_config
        return Saved({path: merged_json(path, existing, opencode_update(endpoint))})
    models, settings = where.pi_dir / "models.json", where.pi_dir / "settings.json"

    def defaults(current: dict) -> None:
        current.update(defaultProvider=PROVIDER, defaultModel=endpoint.model)

    return Saved({models: merged_json(models, existing, pi_models_update(endpoint)), settings: merged_json(settings, existing, defaults)})


def claude_env(endpoint: Endpoint) -> dict[str, str]:
    """Claude Code: the Anthropic API at our root (it adds /v1/messages), every model alias ours."""
    aliases = ("ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL")
    return {
        "ANTHROPIC_BASE_URL": endpoint.base_url,
        "ANTHROPIC_AUTH_TOKEN": endpoint.key,  # sent as Authorization: Bearer, what the gateway checks
        **dict.fromkeys(aliases, endpoint.model),
        "ANTHROPIC_SMALL_FAST_MODEL": endpoint.model,  # older releases' name for the haiku alias
        "API_TIMEOUT_MS": str(TIMEOUT_S * 1000),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry or update checks to hosts a private mesh may not reach
    }


def goose_env(endpoint: Endpoint) -> dict[str, str]:
    """goose: its OpenAI provider, with the host and path split as it wants them."""
    return {
        "GOOSE_PROVIDER": "openai",
        "GOOSE_MODEL": endpoint.model,
        "OPENAI_HOST": endpoint.base_url,
        "OPENAI_BASE_PATH": "v1/chat/completions",
        "OPENAI_API_KEY": endpoint.key,
        "OPENAI_TIMEOUT": str(TIMEOUT_S),
    }


def opencode_config(endpoint: Endpoint) -> dict:
    """opencode: a provider through the AI SDK's OpenAI-compatible package, its one model the default."""
    return {
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "mesh-llm",
                "options": {"baseURL": f"{endpoint.base_url}/v1", "apiKey": endpoint.key, "timeout": TIMEOUT_S * 1000},
                "models": {endpoint.model: {"name": endpoint.model}},
            }
        },
        "model": f"{PROVIDER}/{endpoint.model}",
        "small_model": f"{PROVIDER}/{endpoint.model}",  # titles and summaries: the same model, not a cloud one
    }


def opencode_update(endpoint: Endpoint) -> Callable[[dict], None]:
    ours = opencode_config(endpoint)

    def update(config: dict) -> None:
        config.setdefault("provider", {})[PROVIDER] = ours["provider"][PROVIDER]
        config.update(model=ours["model"], small_model=ours["small_model"])

    return update


def pi_models_update(endpoint: Endpoint) -> Callable[[dict], None]:
    """pi's models.json: our provider (OpenAI chat completions) replaced, the user's others kept, and
    what the user set for our model there (pi's contextWindow, maxTokens, ...) kept too: pi's defaults
    (a 128k window, 16k tokens out) may be far from what the mesh serves, and a launch must not undo
    the user's fix."""
    provider = {
        "baseUrl": f"{endpoint.base_url}/v1",
        "api": "openai-completions",
        "apiKey": endpoint.key,
        # llama-server's chat templates know system, not developer; it takes no reasoning_effort.
        "compat": {"supportsDeveloperRole": False, "supportsReasoningEffort": False},
    }

    def update(models: dict) -> None:
        providers = models.setdefault("providers", {})
        before = providers.get(PROVIDER)
        entries = before.get("models") if isinstance(before, dict) else None
        users = next((m for m in entries or [] if isinstance(m, dict) and m.get("id") == endpoint.model), {})
        providers[PROVIDER] = provider | {"models": [users | {"id": endpoint.model}]}

    return update


def merged_json(path: Path, existing: Mapping[Path, str], update: Callable[[dict], None]) -> str:
    """The text of `path` once `update` has changed its JSON object (an absent or empty file is {})."""
    text = existing.get(path, "")
    try:
        document = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as bad:
        raise ConfigError(f"{path} is not plain JSON ({bad.msg}, line {bad.lineno}): fix it or move it away, then run this again") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path} does not hold a JSON object: fix it or move it away, then run this again")
    update(document)
    return json.dumps(document, indent=2) + "\n"


def merged_yaml(text: str, values: Mapping[str, str | int]) -> str:
    """A flat YAML file with top-level `values` set: their lines replaced where present, else added;
    every other line (comments, extensions) left as it was."""
    lines = text.splitlines()
    for name, value in values.items():
        line = f"{name}: {json.dumps(value)}"  # a JSON string or number is a YAML scalar
        at = next((i for i, old in enumerate(lines) if re.match(rf"{re.escape(name)}\s*:", old)), None)
        if at is None:
            lines.append(line)
        else:
            lines[at] = line
    return "\n".join(lines) + "\n"

"""Node-wide settings every service reads, and turning settings objects into environments.

Owns: the node's identity, the loopback gRPC ports of its four services and the cache root. Each
service has its own settings class beside its code; this module must not know their fields.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import uuid
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _list_from_text(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        return json.loads(text) if text.startswith("[") else [part.strip() for part in text.split(",") if part.strip()]
    return value


# A list setting given as a JSON list or as comma-separated text (what .env files for honcho hold).
TextList = Annotated[list[str], NoDecode, BeforeValidator(_list_from_text)]


def _default_cache() -> Path:
    return Path.home() / ".cache" / "mesh-llm"


class NodeSettings(BaseSettings):
    """What all four services of one node agree on."""

    model_config = SettingsConfigDict(env_prefix="MESH_NODE_", frozen=True)

    # Human name shown in the console and logs; the host name is what people recognise.
    name: str = socket.gethostname()
    # State directory (keys, node id, caches); one per node so test nodes do not collide.
    home: Path = Path.home() / ".mesh-llm"
    # Loopback gRPC ports of the four services; fixed defaults so `honcho start` needs no setup.
    # All fixed ports sit below the ephemeral ranges (Linux 32768+, macOS 49152+): an outgoing
    # connection's local port can never be holding one when the node starts (seen in CI at 50442).
    gateway_grpc_port: int = 19431
    gossip_grpc_port: int = 19432
    placement_grpc_port: int = 19433
    runner_grpc_port: int = 19434
    # Loopback ports of the Prometheus /metrics of gossip, placement and runner (the gateway's
    # is on its API and console ports).
    gossip_metrics_port: int = 19442
    placement_metrics_port: int = 19443
    runner_metrics_port: int = 19444
    # Python logging level name for every service.
    log_level: str = "INFO"
    # Root of what mesh-llm builds and keeps outside the repository and the node's home: llama.cpp's
    # builds (llama.cpp/build.py reads the same MESH_LLM_CACHE), the compiled tensor hashing
    # library; shared by every node of the machine, so one build serves them all.
    cache: Path = Field(default_factory=_default_cache, validation_alias=AliasChoices("MESH_LLM_CACHE", "MESH_NODE_CACHE", "cache"))
    # Gateway, gossip and placement run at idle priority (Linux SCHED_IDLE), so they never take a
    # core from llama's threads; they run when those wait (services/common/cpus.py says why).
    services_idle: bool = True

    @field_validator("cache", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        # An empty MESH_LLM_CACHE means the default, as build.py reads it.
        return _default_cache() if value == "" else value

    def address(self, service: str) -> str:
        """The loopback gRPC address of one of this node's services."""
        return f"127.0.0.1:{getattr(self, f'{service}_grpc_port')}"


def node_id(settings: NodeSettings) -> str:
    """This node's stable id, created once under its home and shared by its services."""
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / "node-id"
    try:
        # O_EXCL: the four services may start at once; exactly one of them writes the id.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return wait_for_text(path)
    with os.fdopen(fd, "w") as f:
        f.write(uuid.uuid4().hex[:16])
    return path.read_text().strip()


def split_secret(settings: NodeSettings) -> bytes:
    """This node's secret for the keys of the splits it hosts (placement/split_keys.py): 32 random
    bytes made once under its home, readable by the node's user only, never sent anywhere."""
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / "split-secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(wait_for_text(path))
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def wait_for_text(path: Path) -> str:
    """The file's content once its writer has finished (it is tiny: a few tries at most)."""
    for _ in range(100):
        text = path.read_text().strip()
        if text:
            return text
        import time

        time.sleep(0.01)
    raise RuntimeError(f"{path} stayed empty")


def environment_for(settings: BaseModel) -> dict[str, str]:
    """The environment variables that rebuild `settings` in a child process."""
    prefix = settings.model_config.get("env_prefix", "")
    variables: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            # Absent means "use the default" in the child too.
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        variables[f"{prefix}{name}".upper()] = text
    return variables

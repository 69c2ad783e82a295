"""Runner settings (prefix MESH_RUNNER_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runner.command import Speculation


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_RUNNER_", frozen=True, populate_by_name=True)

    # Folder with llama-server and ggml-rpc-server; empty: the pinned build under the node's cache
    # (where llama.cpp/build.py puts it: binaries.folder_of), named once when the runner starts.
    llama_bin: Path | None = Field(default=None, validation_alias=AliasChoices("MESH_LLAMA_BIN", "MESH_RUNNER_LLAMA_BIN", "llama_bin"))
    # Context window in tokens shared by all slots; 4096 keeps the KV cache small on CPUs.
    ctx_size: int = 4096
    # CPU threads for generation; by default llama.cpp's own choice over the cores the server may
    # run on (one per physical core, on Apple silicon per performance core; cpus.math_cores): every
    # core the node may use, for a model served alone and for a split.
    threads: int | None = Field(default=None, ge=1)
    # Passed to llama-server --device (e.g. "CUDA0", "none"); empty lets llama.cpp choose.
    device: str = ""
    # Seconds before the first restart of a crashed server; doubles up to restart_backoff_max.
    restart_backoff_initial: float = 0.5
    # Seconds the restart delay never exceeds, so a recovered model comes back within this.
    restart_backoff_max: float = 30.0
    # Seconds a server must stay up before its backoff resets to the initial delay.
    stable_after: float = 60.0
    # Seconds a starting llama-server may take to answer /health before it counts as failed.
    ready_timeout: float = 180.0
    # Prime a split worker's rpc-server cache from the local GGUF, so the host sends hashes, not
    # weights. The cache holds a copy of the worker's layers on disk: False saves that disk and
    # sends the layers over the network instead, as stock llama.cpp RPC does.
    prime_rpc_cache: bool = True
    # Our patch of llama.cpp: RPC client and server send each burst of commands in one write, so
    # the QUIC tunnel relays one read per token instead of a dozen. False: llama.cpp's own sends
    # (the same bytes), a way back should the patch ever misbehave with a newer llama.cpp.
    rpc_coalesce: bool = True
    # Draft-free speculative decoding for every llama-server of this node (--spec): llama.cpp's n-gram
    # types guess tokens from the context. Off by default: it pays where answers repeat their prompt
    # (code edits) and costs a little where they do not (bench/README.md).
    speculation: Speculation = Speculation.NONE
    # Seconds between SIGTERM and SIGKILL when stopping a child.
    stop_timeout: float = 5.0

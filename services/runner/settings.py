"""Runner settings (prefix MESH_RUNNER_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runner.command import Speculation


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_RUNNER_", frozen=True, populate_by_name=True)

    # Folder with llama-server and ggml-rpc-server; empty: the pinned build under the node's cache
    # (where llama.cpp/build.py puts it: binaries.folder_of), named once when the runner starts.
    llama_bin: Path | None = Field(default=None, validation_alias=AliasChoices("MESH_LLAMA_BIN", "MESH_RUNNER_LLAMA_BIN", "llama_bin"))
    # Context window in tokens shared by all slots; 0 sizes it from the memory the weights leave
    # (4K-64K, sizing.py).
    ctx_size: int = Field(default=0, ge=0)
    # KV-cache type of keys and values (llama.cpp's names: f16, q8_0, q4_0...); "" picks by the
    # weights' size (sizing.py).
    kv_type: Literal["", "f16", "bf16", "f32", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"] = ""
    # Concurrent requests a llama-server serves (--parallel, one shared KV pool); 0: from the context.
    parallel: int = Field(default=0, ge=0)
    # llama-server's prompt cache in host RAM, MiB (--cache-ram; -1 no limit); off by default (sizing.py).
    cache_ram_mib: int = Field(default=0, ge=-1)
    # Memory this node offers in bytes (--max-vram), which sizing reads as placement does; 0: the
    # devices' memory, else the RAM.
    max_memory_bytes: int = Field(default=0, ge=0)
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
    # TLS 1.3 in RPC (our patch 0004, rpc_tls.py): a split whose nodes all can speak it connects
    # the host's llama-server to the workers' rpc-servers directly, with no Python in between.
    # False: this node's splits use plain RPC through QUIC tunnels, as before.
    rpc_tls: bool = True
    # Where a TLS rpc-server listens: the address the node's QUIC endpoint binds (peers reach it
    # there); the CLI sets it. A plain rpc-server always listens on 127.0.0.1.
    rpc_host: str = "127.0.0.1"
    # Draft-free speculative decoding for every llama-server of this node (--spec): llama.cpp's n-gram
    # types guess tokens from the context. Off by default: it pays where answers repeat their prompt
    # (code edits) and costs a little where they do not (bench/README.md).
    speculation: Speculation = Speculation.NONE
    # Seconds between SIGTERM and SIGKILL when stopping a child.
    stop_timeout: float = 5.0

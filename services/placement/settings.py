"""Placement settings (prefix MESH_PLACEMENT_)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.records import DownloadPolicy
from services.common.settings import TextList


class PlacementSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_PLACEMENT_", frozen=True)

    # Model specs this node was asked to serve (--model): catalog names, paths or names in models_dir.
    # Accepts a JSON list or comma-separated names (what a .env file for honcho holds).
    models: TextList = []
    # An API-only node (--client): serves nothing and offers no memory.
    client: bool = False
    # Split models over nodes even when they fit one (--split): for tests and benchmarks of splits.
    split: bool = False
    # Draft model for speculative decoding of the models named by --model (--draft): a catalog name,
    # a path or a name in models_dir, resolved by the runner like a model. Empty: the catalog's.
    draft: str = ""
    # Give each model its catalog entry's draft when that file is on disk (--no-draft: False): a
    # small model of the same tokenizer makes the big one faster and never changes its output.
    catalog_drafts: bool = True
    # What the mesh may make this node download (--download): catalog models by default, whose
    # publishers and sizes are known, so a member's demand cannot fill the disk with any repository
    # it names (any) and a standby still takes up the catalog's models (never: only what is on disk).
    # A model named by --model is fetched whatever the policy but never.
    download: DownloadPolicy = DownloadPolicy.CATALOG
    # Folder searched for GGUF files named by file name or stem.
    models_dir: Path = Path.home() / ".models"
    # Memory this node offers in bytes (--max-vram); 0 offers all of it: its GPUs' memory where its
    # llama.cpp build can use a GPU (runner/devices.py), else its RAM.
    max_memory_bytes: int = 0
    # Fraction of a model's size kept free on top of it (10%: llama.cpp's compute buffers).
    headroom: float = 0.10
    # Bytes set aside for the KV cache and buffers of one model at the runner's context size.
    context_bytes: int = 256 * 1024 * 1024
    # A standby node (--standby, or no --model): models named by --model are only held on disk, and
    # the node serves what the mesh's demand asks of it (promotion.py).
    standby: bool = False
    # Seconds a new promotion must stay wanted before the node acts (views settle; no duplicate loads).
    promote_settle: float = 1.0
    # Rebalance: a model this many times hotter per server than the coldest, with this many
    # requests in the last hour, gets a standby node too.
    hot_ratio: float = 3.0
    hot_requests: int = 10
    # Experts per layer every MoE shard keeps at least (besides 4 x experts per token).
    moe_floor: int = 0
    # Seconds a split's worker may show no sign of coming up (the plan not taken, or its rpc-server
    # failing) before its host plans without it, so that a worker that cannot start one does not keep
    # the model unserved. Priming is not counted (the worker shows it took the plan), and a primed
    # rpc-server is ready within a second or two: a minute leaves room for a loaded machine.
    worker_start_bound: float = 60.0
    # Seconds such a worker first stays out of this node's split plans (doubled each time it is late
    # again, up to 6 h) before it is tried again (a solo
    # server keeps serving while the split waits for it); long enough that a broken worker costs
    # little, short enough that a repaired one is used again soon.
    worker_exclusion: float = 600.0

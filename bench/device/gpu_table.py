#!/usr/bin/env python3
"""The GPU table: concurrent streams through the gateway and the QUIC tunnel against llama-server
direct, as shipped, on one GPU machine (bench/device/gpu_table.sh after `GPU=1 prepare.sh`).

Per model shape (a small one and an 8B one, random weights written by setup.sh), one node A serves
it as shipped (no hand-made flags: sizing.py picks context, KV types and slots) and a client node C
joins A. Five paths, each a round of N concurrent streamed chats (N = 1, 4, 16), in rotating order:
  direct   A's llama-server itself
  gateway  A's API (same machine, through A's gateway)
  tunnel   C's API (C's gateway -> QUIC -> A's gateway -> llama-server)
  hand     a second llama-server on the same GPU with the best flags found by hand
  direct2  A's llama-server again: the control row (direct vs direct)
Per path and N: aggregate tok/s (all streams' tokens over the round's wall time), its median over
rounds and the median of the per-round ratios to `direct`, TTFT p50 and max (a first-token stall
shows as the max), and the gateways' CPU ms per token. Prompts differ per stream and
`cache_prompt` is off, so every request does the same work on every path.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import psutil

from services.runner.command import child_environment
from tests.meshbed import MeshBed
from tests.nodes import NodeProcess, free_port

BIN = Path(os.environ.get("MESH_LLAMA_BIN", "/tmp/devbench/bin"))
MODELS = [Path(p) for p in os.environ.get("GPU_MODELS", "/tmp/devbench/models/Small.gguf,/tmp/devbench/models/Dense-8B.gguf").split(",")]
OUT = Path(os.environ.get("OUT", "/tmp/gpu_table_out"))
WORK = Path("/tmp/gputable")
STREAMS = tuple(int(n) for n in os.environ.get("GPU_STREAMS", "1,4,16").split(","))
ROUNDS = int(os.environ.get("GPU_ROUNDS", "3"))
MAX_TOKENS = int(os.environ.get("GPU_MAX_TOKENS", "128"))
# The best configuration of llama-server found by hand for concurrent streams (issue 21: 16 slots,
# one KV pool, no host-RAM prompt cache; every layer on the GPU, flash attention).
HAND_FLAGS = os.environ.get("GPU_HAND_FLAGS", "--parallel 16 --kv-unified --cache-ram 0 --n-gpu-layers 99 --flash-attn on").split()


async def stream(client: httpx.AsyncClient, base: str, model: str, prompt: str) -> tuple[float, int]:
    """(seconds to the first token, tokens) of one streamed chat."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,  # random weights may end early; llama-server reads it
        "cache_prompt": False,
    }
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                tokens += 1
                if not first:
                    first = time.perf_counter() - started
    return first, tokens


async def one_round(base: str, model: str, count: int, tag: str) -> tuple[float, list[float], int]:
    """(wall seconds, TTFTs, tokens) of `count` concurrent streams."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(stream(client, base, model, f"Story {tag}-{i}: write a long tale about the sea, number {i}.") for i in range(count)))
        wall = time.perf_counter() - started
    return wall, [first for first, _ in results], sum(tokens for _, tokens in results)


def gateway_process(node: NodeProcess) -> psutil.Process:
    (gateway,) = [p for p in node.descendants() if "services.gateway" in " ".join(p.cmdline())]
    return gateway


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def wait_http(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: exited {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url}: not healthy after {timeout}s")


def measure(model_path: Path) -> list[dict]:
    bed = MeshBed(WORK / model_path.stem, relayed=False)
    hand = None
    try:
        a = bed.start("A", "--model", str(model_path), "--download", "never", "--no-announce")
        state = a.wait_ready(a_model_id(model_path), 600)
        model_id = a_model_id(model_path)
        c = bed.start("C", "--client", "--no-announce", join=a)
        bed.wait_until(lambda: c_routes(c, model_id), 120, "C sees A's model")
        (server,) = a.llama_servers()
        argv = server.cmdline()
        print("A's llama-server:", " ".join(argv[1:]), flush=True)
        ctx = argv[argv.index("--ctx-size") + 1]
        port = free_port("127.0.0.1")
        log = (OUT / f"hand-{model_path.stem}.log").open("wb")
        hand_argv = [
            str(BIN / "llama-server"),
            "--model",
            str(model_path),
            "--alias",
            model_id,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ctx-size",
            ctx,
            *HAND_FLAGS,
        ]
        print("hand llama-server:", " ".join(hand_argv[1:]), flush=True)
        hand = subprocess.Popen(hand_argv, stdout=log, stderr=subprocess.STDOUT, env=child_environment(dict(os.environ)))
        wait_http(f"http://127.0.0.1:{port}/health", hand)
        direct = f"http://127.0.0.1:{state['port']}"
        paths = {"direct": direct, "gateway": a.api, "tunnel": c.api, "hand": f"http://127.0.0.1:{port}", "direct2": direct}
        gateways = {"gateway": [gateway_process(a)], "tunnel": [gateway_process(a), gateway_process(c)]}
        for base in paths.values():  # warm-up: CUDA graphs, connections
            asyncio.run(one_round(base, model_id, 2, "warm"))
        rows = []
        for count in STREAMS:
            samples: dict[str, list[tuple[float, list[float], int, float]]] = {name: [] for name in paths}
            for r in range(ROUNDS):
                order = list(paths)[r % len(paths) :] + list(paths)[: r % len(paths)]
                for name in order:
                    watched = gateways.get(name, [])
                    before = sum(cpu_seconds(p) for p in watched)
                    wall, ttfts, tokens = asyncio.run(one_round(paths[name], model_id, count, f"{r}{name}"))
                    cpu = sum(cpu_seconds(p) for p in watched) - before
                    samples[name].append((wall, ttfts, tokens, cpu))
            for name, runs in samples.items():
                rates = [tokens / wall for wall, _, tokens, _ in runs]
                ratios = [(tokens / wall) / (d_tokens / d_wall) for (wall, _, tokens, _), (d_wall, _, d_tokens, _) in zip(runs, samples["direct"], strict=True)]
                ttfts = [t for _, firsts, _, _ in runs for t in firsts]
                direct_ttft = statistics.median([t for _, firsts, _, _ in samples["direct"] for t in firsts])
                rows.append(
                    {
                        "model": model_path.stem,
                        "ctx": int(ctx),
                        "streams": count,
                        "path": name,
                        "tok_s": statistics.median(rates),
                        "ratio": statistics.median(ratios),
                        "ratio_min": min(ratios),
                        "ttft_p50_ms": 1000 * statistics.median(ttfts),
                        "ttft_added_ms": 1000 * (statistics.median(ttfts) - direct_ttft),
                        "ttft_max_ms": 1000 * max(ttfts),
                        "cpu_ms_per_token": 1000 * sum(cpu for *_, cpu in runs) / max(1, sum(tokens for _, _, tokens, _ in runs)),
                        "tokens": sum(tokens for _, _, tokens, _ in runs),
                    }
                )
            print_rows([row for row in rows if row["streams"] == count])
        return rows
    finally:
        if hand is not None:
            hand.terminate()
            hand.wait(30)
        for name, node in bed.nodes.items():
            (OUT / f"node-{model_path.stem}-{name}.log").write_text(node.log_path.read_text(errors="replace")[-200000:])
        bed.close()


def a_model_id(path: Path) -> str:
    return path.stem


def c_routes(c: NodeProcess, model_id: str) -> bool:
    try:
        return any(m.get("id") == model_id for m in httpx.get(f"{c.api}/v1/models", timeout=5).json().get("data", []))
    except (httpx.HTTPError, ValueError):
        return False


def print_rows(rows: list[dict]) -> None:
    for row in rows:
        print(
            f"{row['model']:<10} ctx {row['ctx']:>6} streams {row['streams']:>3} {row['path']:<8} {row['tok_s']:8.1f} tok/s  "
            f"x{row['ratio']:.3f} (min {row['ratio_min']:.3f})  TTFT p50 {row['ttft_p50_ms']:7.1f} ms ({row['ttft_added_ms']:+6.1f})  "
            f"max {row['ttft_max_ms']:7.1f} ms  cpu {row['cpu_ms_per_token']:.3f} ms/token",
            flush=True,
        )


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    if shutil.which("nvidia-smi"):
        print(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout, flush=True)
    rows = []
    for model in MODELS:
        print(f"\n== {model.stem} ({model.stat().st_size / 1e9:.2f} GB)", flush=True)
        rows += measure(model)
    print("\n== table (median over rounds; ratio: per-round paired vs direct)")
    print("| model | streams | path | tok/s | x direct (min) | TTFT p50 ms (added) | TTFT max ms | gateway CPU ms/token |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['streams']} | {row['path']} | {row['tok_s']:.0f} | {row['ratio']:.3f} ({row['ratio_min']:.3f}) | "
            f"{row['ttft_p50_ms']:.1f} ({row['ttft_added_ms']:+.1f}) | {row['ttft_max_ms']:.0f} | {row['cpu_ms_per_token']:.3f} |"
        )
    (OUT / "rows.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmarks share: one timed streamed chat request, percentiles, and the table."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from services.common.settings import NodeSettings
from services.runner import binaries
from services.runner.settings import RunnerSettings

MODEL = "SmolLM2-135M-Instruct"
CACHE = NodeSettings().cache / "bench"  # MESH_LLM_CACHE, as the nodes read it


def llama_bin() -> Path:
    """The llama.cpp binaries a node's runner would start: MESH_LLAMA_BIN, else the pinned build in the cache."""
    return binaries.folder_of(RunnerSettings().llama_bin, NodeSettings().cache)


def cached_model(name: str, write: Callable[[Path, Path], object]) -> Path:
    """The benchmark's random-weight GGUF `name`, written once by write(path, tokenizer GGUF) and
    kept in the cache (a file appears whole or not at all)."""
    from services.runner.models import resolve

    path = CACHE / f"{name}.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path.with_suffix(".tmp"), resolve(MODEL, path.parent).path)
        path.with_suffix(".tmp").replace(path)
    return path


def wait_healthy(base: str, process: subprocess.Popen) -> None:
    """Until llama-server at `base` answers /health; a server that exited fails the benchmark."""
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.1)


def streamed_request(client: httpx.Client, base: str, prompt: str, max_tokens: int, model: str = MODEL) -> tuple[float, float, int]:
    """(seconds to the first token, decode tokens per second, tokens) for one streamed chat.

    llama-server sometimes closes a kept-alive connection after a streamed response; like the
    gateway, the direct path then sends the request again on a fresh connection (timed from the
    first try, so both paths pay for it the same way).
    """
    started = time.perf_counter()
    try:
        return _streamed_request(client, base, prompt, max_tokens, started, model)
    except httpx.RemoteProtocolError:
        return _streamed_request(client, base, prompt, max_tokens, started, model)


def _streamed_request(client: httpx.Client, base: str, prompt: str, max_tokens: int, started: float, model: str) -> tuple[float, float, int]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 1,
        "cache_prompt": False,
        "ignore_eos": True,
    }
    stamps = []
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise SystemExit(f"{base}: HTTP {response.status_code}: {response.read().decode()[:300]}")
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line:
                stamps.append(time.perf_counter())
    ttft = stamps[0] - started
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    return ttft, rate, len(stamps)


def run_interleaved(paths: dict[str, str], requests: int, max_tokens: int) -> dict[str, list[tuple[float, float, int]]]:
    """The same requests on every path, rotating which path goes first so load is shared fairly."""
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in paths}
    names = list(paths)
    with httpx.Client(timeout=120) as client:
        for base in paths.values():  # warm-up, not measured
            streamed_request(client, base, "Warm up.", 8)
        for i in range(requests):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                results[name].append(streamed_request(client, paths[name], f"Tell me fact number {i} about the sea.", max_tokens))
    return results


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def print_table(title: str, results: dict[str, list[tuple[float, float, int]]]) -> dict[str, tuple[float, float, float]]:
    """Print the table; {path: (TTFT p50 ms, TTFT p90 ms, decode tok/s p50)}."""
    rows = {}
    print(f"\n{title}\n")
    print(f"| {'path':<34} | {'TTFT p50 ms':>11} | {'TTFT p90 ms':>11} | {'decode tok/s p50':>16} | {'tokens':>6} |")
    print(f"|{'-' * 36}|{'-' * 13}|{'-' * 13}|{'-' * 18}|{'-' * 8}|")
    for name, samples in results.items():
        ttfts = [s[0] * 1000 for s in samples]
        row = (percentile(ttfts, 0.5), percentile(ttfts, 0.9), statistics.median(s[1] for s in samples))
        rows[name] = row
        print(f"| {name:<34} | {row[0]:>11.1f} | {row[1]:>11.1f} | {row[2]:>16.1f} | {sum(s[2] for s in samples):>6} |")
    return rows


def compare(rows: dict[str, tuple[float, float, float]], baseline: str, other: str) -> None:
    base, row = rows[baseline], rows[other]
    print(f"{other} vs {baseline}: tokens/s ratio {row[2] / base[2]:.3f}, TTFT added p50 {row[0] - base[0]:+.1f} ms, p90 {row[1] - base[1]:+.1f} ms")

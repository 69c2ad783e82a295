#!/usr/bin/env python3
"""Benchmark: the same streamed requests to llama-server directly and through the gateway.

Starts one real node (SmolLM2-135M-Instruct), finds its llama-server, and sends N streamed chat
requests to each, interleaved so both paths see the same machine load. Prompt caching is off so
every request does the same work. Prints a table: TTFT p50/p90, decode tokens/s, and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.nodes import NodeProcess  # noqa: E402

MODEL = "SmolLM2-135M-Instruct"


def streamed_request(client: httpx.Client, base: str, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first token, decode tokens per second, tokens) for one streamed chat.

    llama-server sometimes closes a kept-alive connection after a streamed response; like the
    gateway, the direct path then sends the request again on a fresh connection (timed from the
    first try, so both paths pay for it the same way).
    """
    started = time.perf_counter()
    try:
        return _streamed_request(client, base, prompt, max_tokens, started)
    except httpx.RemoteProtocolError:
        return _streamed_request(client, base, prompt, max_tokens, started)


def _streamed_request(client: httpx.Client, base: str, prompt: str, max_tokens: int, started: float) -> tuple[float, float, int]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True, "max_tokens": max_tokens,
            "temperature": 0, "seed": 1, "cache_prompt": False, "ignore_eos": True}
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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch:
        node = NodeProcess(Path(scratch), "--model", MODEL).start()
        try:
            port = node.wait_ready(MODEL)["port"]
            paths = {"llama-server direct": f"http://127.0.0.1:{port}", "through the gateway": node.api}
            results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in paths}
            with httpx.Client(timeout=120) as client:
                for base in paths.values():  # warm-up, not measured
                    streamed_request(client, base, "Warm up.", 8)
                for i in range(args.requests):
                    order = list(paths.items()) if i % 2 == 0 else list(reversed(paths.items()))
                    for name, base in order:
                        results[name].append(streamed_request(client, base, f"Tell me fact number {i} about the sea.", args.max_tokens))
        finally:
            node.stop()
    print_table(results, args.requests)
    return 0


def print_table(results: dict[str, list[tuple[float, float, int]]], requests: int) -> None:
    rows = []
    for name, samples in results.items():
        ttfts = [s[0] * 1000 for s in samples]
        rates = [s[1] for s in samples]
        rows.append((name, percentile(ttfts, 0.5), percentile(ttfts, 0.9), statistics.median(rates), sum(s[2] for s in samples)))
    print(f"\n{requests} streamed chat requests each, {MODEL}, interleaved\n")
    print(f"| {'path':<22} | {'TTFT p50 ms':>11} | {'TTFT p90 ms':>11} | {'decode tok/s p50':>16} | {'tokens':>6} |")
    print(f"|{'-' * 24}|{'-' * 13}|{'-' * 13}|{'-' * 18}|{'-' * 8}|")
    for name, p50, p90, rate, tokens in rows:
        print(f"| {name:<22} | {p50:>11.1f} | {p90:>11.1f} | {rate:>16.1f} | {tokens:>6} |")
    direct, gateway = rows
    print(f"\ntokens/s ratio (gateway / direct): {gateway[3] / direct[3]:.3f}")
    print(f"TTFT added by the gateway: p50 {gateway[1] - direct[1]:+.1f} ms, p90 {gateway[2] - direct[2]:+.1f} ms")


if __name__ == "__main__":
    sys.exit(main())

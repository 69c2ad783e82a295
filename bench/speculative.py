#!/usr/bin/env python3
"""Benchmark: decode speed with and without speculative decoding, on a code edit.

Starts one real node (SmolLM2-135M-Instruct) per setting, one after the other: none, each n-gram
type (--spec), SmolLM2 as its own draft (--draft), and both. Each answers the same greedy requests
through the gateway (the tests' code-edit prompt: repeat a function with one change); llama-server's
own timings give decode tokens/s and how many drafted tokens were accepted. Greedy output is the
same in every setting, so each decodes the same tokens. Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MODEL
from services.runner.command import Speculation
from tests.e2e.test_speculative import CODE_EDIT
from tests.nodes import NodeProcess

SETTINGS: dict[str, tuple[str, ...]] = {
    "none": ("--no-draft",),
    **{f"--spec {kind}": ("--spec", str(kind)) for kind in Speculation if kind != Speculation.NONE},
    f"--draft {MODEL}": ("--draft", MODEL),
    f"--draft + --spec {Speculation.NGRAM_SIMPLE}": ("--draft", MODEL, "--spec", str(Speculation.NGRAM_SIMPLE)),
}


def measure(scratch: Path, flags: tuple[str, ...], requests: int, max_tokens: int) -> tuple[list[float], int, int, str]:
    """(decode tokens/s per request, tokens drafted, drafted tokens accepted, the answer) of a node started with `flags`."""
    node = NodeProcess(scratch, "--model", MODEL, *flags).start()
    rates, drafted, accepted, answer = [], 0, 0, ""
    try:
        node.wait_ready(MODEL)
        body = {"model": MODEL, "messages": CODE_EDIT, "temperature": 0, "seed": 1, "max_tokens": max_tokens, "cache_prompt": False}
        with httpx.Client(timeout=120) as client:
            client.post(f"{node.api}/v1/chat/completions", json=body | {"max_tokens": 8})  # warm-up, not measured
            for _ in range(requests):
                reply = client.post(f"{node.api}/v1/chat/completions", json=body).json()
                timings = reply["timings"]
                rates.append(timings["predicted_per_second"])
                drafted += timings.get("draft_n", 0)
                accepted += timings.get("draft_n_accepted", 0)
                answer = reply["choices"][0]["message"]["content"]
    finally:
        node.stop()
    return rates, drafted, accepted, answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    rows: dict[str, tuple[float, int, int]] = {}
    answers: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch:
        for i, (name, flags) in enumerate(SETTINGS.items()):
            rates, drafted, accepted, answer = measure(Path(scratch) / str(i), flags, args.requests, args.max_tokens)
            rows[name] = (statistics.median(rates), drafted, accepted)
            answers.add(answer)
    print(f"\n{args.requests} greedy code-edit requests each (repeat a function with one change), {MODEL}, through the gateway\n")
    print(f"| {'setting':<44} | {'decode tok/s p50':>16} | {'vs none':>7} | {'accepted / drafted':>18} | {'acceptance':>10} |")
    print(f"|{'-' * 46}|{'-' * 18}|{'-' * 9}|{'-' * 20}|{'-' * 12}|")
    base = rows["none"][0]
    for name, (rate, drafted, accepted) in rows.items():
        ratio = f"{accepted / drafted:.0%}" if drafted else "-"
        print(f"| {name:<44} | {rate:>16.1f} | {rate / base:>6.2f}x | {f'{accepted} / {drafted}':>18} | {ratio:>10} |")
    print(f"\nthe same answer in every setting: {len(answers) == 1}")
    return 0 if len(answers) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())

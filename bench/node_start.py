#!/usr/bin/env python3
"""Measure: what one node's start costs, the unit the test suite pays a few hundred times.

Starts a node serving SmolLM2 (as `mesh-llm --model SmolLM2-135M-Instruct`, default profile)
ROUNDS times, one after another, and reads from each: the seconds from its launch to the model
ready in /api/status, and the CPU seconds each of its processes had spent by then (the CLI, the
four services, llama-server). On a 2-core machine the five Python processes' start-up CPU, most of
it imports, is what a node's start waits on. Rows: each process's median CPU, then the total and
the seconds to ready (median and range).

Env: BENCH_ROUNDS (5).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import SMOLLM2
from tests.nodes import NodeProcess

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
PROCESSES = ("cli", "gossip", "runner", "placement", "gateway", "llama-server")


def role(process: psutil.Process) -> str:
    argv = process.cmdline()
    if "-m" in argv and argv.index("-m") + 1 < len(argv) and argv[argv.index("-m") + 1].startswith("services."):
        return argv[argv.index("-m") + 1].removeprefix("services.")
    return "llama-server" if process.name() == "llama-server" else "cli"


def one_start(folder: Path) -> tuple[float, dict[str, float]]:
    node = NodeProcess(folder, "--model", SMOLLM2)
    started = time.monotonic()
    node.start()
    try:
        node.wait_ready(SMOLLM2)
        ready = time.monotonic() - started
        assert node.process is not None
        cpu: dict[str, float] = {}
        for process in [psutil.Process(node.process.pid), *node.descendants()]:
            times = process.cpu_times()
            cpu[role(process)] = cpu.get(role(process), 0.0) + times.user + times.system
        return ready, cpu
    finally:
        node.stop()


def main() -> None:
    rounds = []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(ROUNDS):
            rounds.append(one_start(Path(folder) / f"node{index}"))
    print(f"\nOne node's start, SmolLM2, {ROUNDS} rounds on {os.cpu_count()} cores (CPU seconds spent by the time the model is ready)\n")
    print(f"{'process':<14}{'CPU s (median)':>16}")
    for name in PROCESSES:
        print(f"{name:<14}{statistics.median(cpu.get(name, 0.0) for _, cpu in rounds):>16.2f}")
    totals = [sum(cpu.values()) for _, cpu in rounds]
    readies = [ready for ready, _ in rounds]
    print(f"{'all':<14}{statistics.median(totals):>16.2f}")
    print(f"\nready after {statistics.median(readies):.2f} s (median; {min(readies):.2f}-{max(readies):.2f})")


if __name__ == "__main__":
    main()

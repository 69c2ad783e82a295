#!/usr/bin/env python3
"""Benchmark: `mesh-llm download` against curl, for one large file from the local Hub (tests/hub.py).

Serves a file of random bytes under a .gguf name (the Hub and the download check only bytes and
sha256, never the GGUF inside) and fetches it, in rounds that rotate the order:
- curl -L of its /resolve URL (following the redirect to storage, as the client does): the server's pace;
- huggingface_hub's http_get alone (a subprocess timing only the call): the client's transfer;
- `mesh-llm download NAME` (the real CLI, a fresh models folder each time): what a user waits for;
- and the CLI's other parts: the same command once the file is on disk (start-up, the HEAD on
  /resolve, nothing fetched) and the sha256 of the file (in this process, from the page cache);
- a resumed download: the CLI killed with its body stalled at half the file, then run again.
Prints a table: median seconds, MB/s (1 MB = 10^6 bytes), and throughput vs curl.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.runner.downloads import sha256_of
from tests.hub import LocalHub
from tests.integration.test_downloads import environment
from tests.nodes import MESH_LLM

NAME = "Bench-Random"
REPO = "benchorg/Random-GGUF"
FILE = "random.gguf"
CURL, HTTP_GET, CLI, ON_DISK, SHA256, RESUMED = (
    "curl -L",
    "huggingface_hub http_get alone",
    "mesh-llm download",
    "  its start-up and HEAD (file on disk)",
    "  its sha256 of the file",
    "mesh-llm download, resumed at 50%",
)

# The client's transfer without our CLI around it: the storage URL, the file, and the seconds of the call alone.
HTTP_GET_ALONE = """
import sys, time
from huggingface_hub.file_download import http_get
with open(sys.argv[2], "wb") as out:
    started = time.perf_counter()
    http_get(sys.argv[1], out, expected_size=int(sys.argv[3]))
    print(time.perf_counter() - started)
"""


class Bench:
    """The hub serving one file, a scratch folder, and each method's timed runs."""

    def __init__(self, hub: LocalHub, scratch: Path, size_bytes: int) -> None:
        self.hub = hub
        self.scratch = scratch
        self.size_bytes = size_bytes
        self.served = hub.files[(REPO, FILE)]
        self.env = environment(scratch, hub.endpoint)
        self.runs = 0

    def fresh_models_dir(self) -> Path:
        self.runs += 1
        folder = self.scratch / f"models-{self.runs}"
        folder.mkdir()
        (folder / "catalog.toml").write_text(f'[[model]]\nname = "{NAME}"\nrepo = "{REPO}"\nfile = "{FILE}"\nsize = {self.size_bytes}\nquant = "Q8_0"\n')
        return folder

    def download(self, models_dir: Path) -> float:
        """Seconds of one `mesh-llm download NAME` into models_dir."""
        started = time.perf_counter()
        done = subprocess.run([str(MESH_LLM), "download", NAME, "--models-dir", str(models_dir)], capture_output=True, text=True, env=self.env, timeout=600)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"mesh-llm download failed: {done.stderr[-2000:]}")
        return elapsed

    def curl(self) -> dict[str, float]:
        out = self.scratch / "curl.gguf"
        started = time.perf_counter()
        subprocess.run(["curl", "-sS", "-L", "-o", str(out), f"{self.hub.endpoint}/{REPO}/resolve/main/{FILE}"], check=True, timeout=600)
        elapsed = time.perf_counter() - started
        self.check_whole(out)
        return {CURL: elapsed}

    def http_get(self) -> dict[str, float]:
        out = self.scratch / "http_get.gguf"
        url = f"{self.hub.storage}/{self.served.sha256}?name={FILE}"
        done = subprocess.run(
            [sys.executable, "-c", HTTP_GET_ALONE, url, str(out), str(self.size_bytes)], capture_output=True, text=True, env=self.env, timeout=600
        )
        if done.returncode != 0:
            raise SystemExit(f"http_get failed: {done.stderr[-2000:]}")
        self.check_whole(out)
        return {HTTP_GET: float(done.stdout.split()[-1])}

    def cli(self) -> dict[str, float]:
        models_dir = self.fresh_models_dir()
        whole = self.download(models_dir)
        path = models_dir / REPO / FILE
        if path.stat().st_size != self.size_bytes:
            raise SystemExit(f"{path}: {path.stat().st_size} bytes, not {self.size_bytes}")
        again = self.download(models_dir)  # nothing left to fetch
        started = time.perf_counter()
        sha256_of(path)
        hashed = time.perf_counter() - started
        shutil.rmtree(models_dir)
        return {CLI: whole, ON_DISK: again, SHA256: hashed}

    def resumed(self) -> dict[str, float]:
        """Seconds of the second run after a download killed at half the file; also the bytes it fetched."""
        models_dir = self.fresh_models_dir()
        self.hub.stall(FILE, at=self.size_bytes // 2)
        first = subprocess.Popen(
            [str(MESH_LLM), "download", NAME, "--models-dir", str(models_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env
        )
        try:
            if not self.hub.stalled.wait(timeout=120):
                raise SystemExit("the first download never reached the stall")
            kept = settled_size(models_dir)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        self.hub.release()
        self.hub.sent.clear()
        elapsed = self.download(models_dir)
        fetched = self.hub.sent[FILE]
        if fetched != self.size_bytes - kept:
            raise SystemExit(f"the resumed run fetched {fetched} bytes, not the {self.size_bytes - kept} its partial file lacked")
        shutil.rmtree(models_dir)
        return {RESUMED: elapsed, "resumed bytes": fetched}

    def check_whole(self, path: Path) -> None:
        size = path.stat().st_size
        path.unlink()
        if size != self.size_bytes:
            raise SystemExit(f"{path}: {size} bytes, not {self.size_bytes}")

    def profile(self) -> None:
        """One CLI download under cProfile: the functions it spent the most time in."""
        models_dir = self.fresh_models_dir()
        stats = self.scratch / "download.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(stats), str(MESH_LLM), "download", NAME, "--models-dir", str(models_dir)]
        subprocess.run(argv, capture_output=True, env=self.env, check=True, timeout=600)
        print("\nmesh-llm download under cProfile (the profiler slows Python code, not C calls), by time in the function itself:\n")
        pstats.Stats(str(stats)).sort_stats("tottime").print_stats(12)
        shutil.rmtree(models_dir)


def settled_size(models_dir: Path) -> int:
    """Bytes of the partial file once it stops growing (the client writes what arrived before the stall)."""
    size = -1
    for _ in range(300):
        found = list(models_dir.rglob("*.incomplete"))
        if found and found[0].stat().st_size == size > 0:
            return size
        size = found[0].stat().st_size if found else -1
        time.sleep(0.2)
    raise SystemExit("the partial file never settled")


def write_random(path: Path, size_bytes: int) -> Path:
    with path.open("wb") as out:
        for start in range(0, size_bytes, 8 << 20):
            out.write(os.urandom(min(8 << 20, size_bytes - start)))
    return path


def print_table(samples: dict[str, list[float]], size_bytes: int, runs: int) -> None:
    print(f"\n{size_bytes / 1e6:.0f} MB from the local Hub on loopback, {runs} runs each (median), methods interleaved\n")
    print(f"| {'method':<38} | {'seconds p50':>11} | {'MB':>5} | {'MB/s':>6} | {'vs curl':>7} |")
    print(f"|{'-' * 40}|{'-' * 13}|{'-' * 7}|{'-' * 8}|{'-' * 9}|")
    curl = size_bytes / statistics.median(samples[CURL])
    for name, values in samples.items():
        if name == "resumed bytes":
            continue
        seconds = statistics.median(values)
        moved = statistics.median(samples["resumed bytes"]) if name == RESUMED else 0 if name == ON_DISK else size_bytes
        rate = f"{moved / seconds / 1e6:>6.0f}" if moved else f"{'-':>6}"
        ratio = f"{moved / seconds / curl:>6.2f}x" if moved and name != SHA256 else f"{'-':>7}"
        print(f"| {name:<38} | {seconds:>11.2f} | {moved / 1e6:>5.0f} | {rate} | {ratio} |")
    parts = statistics.median(samples[HTTP_GET]) + statistics.median(samples[ON_DISK]) + statistics.median(samples[SHA256])
    print(f"\nhttp_get alone + start-up and HEAD + sha256 = {parts:.2f} s, the whole CLI {statistics.median(samples[CLI]):.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=500, help="size of the served file, in MB (10^6 bytes)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also run the CLI once under cProfile and print where its time went")
    args = parser.parse_args()
    size_bytes = args.mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch:
        hub = LocalHub()
        try:
            hub.add(REPO, FILE, write_random(Path(scratch) / "served.gguf", size_bytes))
            bench = Bench(hub, Path(scratch), size_bytes)
            methods: list[Callable[[], dict[str, float]]] = [bench.curl, bench.http_get, bench.cli, bench.resumed]
            samples: dict[str, list[float]] = {name: [] for name in (CURL, HTTP_GET, CLI, ON_DISK, SHA256, RESUMED, "resumed bytes")}
            bench.curl()  # warm-up, not measured: the served file into the page cache
            for round_ in range(args.runs):
                for method in methods[round_ % len(methods) :] + methods[: round_ % len(methods)]:
                    for name, value in method().items():
                        samples[name].append(value)
            print_table(samples, size_bytes, args.runs)
            if args.profile:
                bench.profile()
        finally:
            hub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

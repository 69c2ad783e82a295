#!/usr/bin/env python3
"""Benchmark: the same streamed requests to llama-server directly and through the gateway.

Starts one real node (SmolLM2-135M-Instruct), finds its llama-server, and sends N streamed chat
requests to each, interleaved so both paths see the same machine load. Prompt caching is off so
every request does the same work. Prints a table: TTFT p50/p90, decode tokens/s, and the ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MODEL, compare, print_table, run_interleaved
from tests.nodes import NodeProcess


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
            results = run_interleaved(paths, args.requests, args.max_tokens)
        finally:
            node.stop()
    rows = print_table(f"{args.requests} streamed chat requests each, {MODEL}, interleaved", results)
    compare(rows, "llama-server direct", "through the gateway")
    return 0


if __name__ == "__main__":
    sys.exit(main())

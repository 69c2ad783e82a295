"""Command lines for the processes the runner starts: pure builders, no I/O.

Owns argv construction for llama-server; must not start anything.
"""

from __future__ import annotations

from pathlib import Path


def llama_server_argv(binary: Path, model_path: Path, model_id: str, port: int, *, ctx_size: int, threads: int, device: str) -> list[str]:
    """llama-server serving one model on 127.0.0.1:port under the name `model_id`."""
    argv = [
        str(binary),
        "--model", str(model_path),
        "--alias", model_id,
        # Security invariant: llama-server is only reachable through our gateway.
        "--host", "127.0.0.1",
        "--port", str(port),
        "--ctx-size", str(ctx_size),
        "--threads", str(threads),
        # /metrics and /slots let tests and the console see load and free slots.
        "--metrics",
        "--slots",
        "--no-webui",
    ]
    if device:
        argv += ["--device", device]
    return argv


def child_environment(base: dict[str, str]) -> dict[str, str]:
    """The explicit environment a child gets: only what it needs, nothing of ours."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "CUDA_VISIBLE_DEVICES", "LLAMA_CACHE")
    return {name: base[name] for name in keep if name in base}

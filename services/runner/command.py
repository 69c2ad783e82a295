"""Command lines for the processes the runner starts: pure builders, no I/O.

Owns argv construction for llama-server; must not start anything.
"""

from __future__ import annotations

from pathlib import Path

# The output layer (and token_embd, which tied-embedding models reuse as their output).
HOST_TENSORS = r"^(output|output_norm|token_embd)\."


def llama_server_argv(
    binary: Path,
    model_path: Path,
    model_id: str,
    port: int,
    *,
    ctx_size: int,
    threads: int,
    device: str,
    rpc_endpoints: tuple[str, ...] = (),
    worker_layers: int = 0,
    tensor_split: tuple[float, ...] = (),
) -> list[str]:
    """llama-server serving one model on 127.0.0.1:port under the name `model_id`; with RPC
    endpoints, the last `worker_layers` blocks run on the workers, `tensor_split` blocks each
    (in --rpc order), and the output layer on the host."""
    argv = [
        str(binary),
        "--model",
        str(model_path),
        "--alias",
        model_id,
        # Security invariant: llama-server is only reachable through our gateway.
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        str(ctx_size),
        "--threads",
        str(threads),
        # /metrics and /slots let tests and the console see load and free slots.
        "--metrics",
        "--slots",
        "--no-webui",
    ]
    if device:
        argv += ["--device", device]
    if rpc_endpoints:
        # llama.cpp counts the output layer as one more offloadable layer and always offloads it
        # with the last blocks: n-gpu-layers = blocks + 1, and the last worker's share counts it.
        # The override keeps its tensors on the host all the same, so each token brings back the
        # hidden state (hidden x 4 bytes) instead of the logits (vocab x 4 bytes: 24x more here).
        argv += ["--rpc", ",".join(rpc_endpoints), "--n-gpu-layers", str(worker_layers + 1), "--override-tensor", f"{HOST_TENSORS}=CPU"]
        # No busy-waiting: a split host's threads mostly wait on its workers, and spinning ones
        # take the CPU the node's gateway needs to relay the RPC traffic. Read only by ggml's own
        # thread pool, in builds without OpenMP (macOS: Apple's clang has none); an OpenMP build
        # (Linux) never reads it, and there the split's GOMP_SPINCOUNT does this (cpus.split_environment).
        argv += ["--poll", "0"]
        if len(rpc_endpoints) > 1:
            shares = [*tensor_split[:-1], tensor_split[-1] + 1]
            argv += ["--tensor-split", ",".join(f"{share:g}" for share in shares)]
    return argv


def rpc_server_argv(binary: Path, port: int, *, threads: int, cache: bool) -> list[str]:
    """ggml-rpc-server on 127.0.0.1:port; it defaults to one thread, so threads are always given."""
    argv = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads)]
    return argv + ["--cache"] if cache else argv


# OpenMP's wait settings, as a llama.cpp user would set them; they reach llama's processes and win
# over the mesh's own choice for a split (services/common/cpus.py split_environment).
OPENMP_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def child_environment(base: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The explicit environment a child gets: only what it needs, nothing of ours."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "CUDA_VISIBLE_DEVICES", "LLAMA_CACHE", *OPENMP_SETTINGS)
    return {name: base[name] for name in keep if name in base} | (extra or {})

"""Command lines for the processes the runner starts: pure builders, no I/O.

Owns argv construction for llama-server; must not start anything.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from services.common import devices as accelerators
from services.runner.sizing import Sizing


class Speculation(StrEnum):
    """Draft-free speculative decoding: llama.cpp's n-gram types (--spec-type), which guess the next
    tokens from what the context already holds; worth it where the output repeats its input (a
    code edit repeats most of the code)."""

    NONE = "none"
    NGRAM_SIMPLE = "ngram-simple"  # the last n tokens looked up in the context, the tokens after them proposed
    NGRAM_MAP_K = "ngram-map-k"  # the same over a map of the context's n-grams (hits counted)
    NGRAM_MAP_K4V = "ngram-map-k4v"  # the map, keeping up to four continuations per n-gram
    NGRAM_MOD = "ngram-mod"  # a hashed n-gram pool shared by the slots (llama.cpp's --spec-default)


# llama.cpp's type of speculation with a separate draft model (one of the same tokenizer).
DRAFT_MODEL = "draft-simple"

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
    host_layers: int = 0,
    host_weights: tuple[int, ...] = (),
    draft: Path | None = None,
    draft_device: str = "",
    speculation: Speculation = Speculation.NONE,
    sizing: Sizing | None = None,
) -> list[str]:
    """llama-server serving one model on 127.0.0.1:port under the name `model_id`, with `sizing`'s
    context, KV types, slots and prompt cache (sizing.py; else `ctx_size` and llama.cpp's defaults); with RPC
    endpoints, the last `worker_layers` blocks run on the workers, `tensor_split` blocks on each
    of their RPC devices (in --rpc order, a worker's devices in its own order), and the output layer
    on the host; with `host_layers` too (a host with a GPU), the workers run the first blocks and the
    host's GPUs its `host_layers` last ones (dealt by `host_weights`, their memory) and the output
    layer. A `draft` model and n-gram `speculation` propose tokens the model then checks in one
    batch (the output stays what it would be); on a split host it runs on `device`, else on
    `draft_device` (a GPU host's own devices), else on the CPU."""
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
        *(sizing.flags() if sizing else ["--ctx-size", str(ctx_size)]),
        "--threads",
        str(threads),
        # /metrics and /slots let tests and the console see load and free slots.
        "--metrics",
        "--slots",
        "--no-webui",
    ]
    if device and not rpc_endpoints:
        argv += ["--device", device]
    if rpc_endpoints and host_layers:
        # A host with a GPU runs its blocks there, in llama.cpp's own RPC order: it lists the RPC
        # devices before its GPU, so with every layer offloaded the workers take the first blocks
        # (tensor_split each) and the GPU the last ones with the output layer (llama.cpp counts it
        # as one more layer, in the last share). A token still crosses as hidden states only: from
        # the embedding (on the host's CPU) to the first worker, from the last worker back.
        host = accelerators.shares(host_layers, host_weights or (1,))
        shares = [*tensor_split, *host[:-1], host[-1] + 1]
        argv += ["--rpc", ",".join(rpc_endpoints), *split_devices(device, len(tensor_split) or len(rpc_endpoints))]
        argv += ["--n-gpu-layers", "999", "--tensor-split", ",".join(f"{share:g}" for share in shares), "--poll", "0"]
    elif rpc_endpoints:
        # llama.cpp counts the output layer as one more offloadable layer and always offloads it
        # with the last blocks: n-gpu-layers = blocks + 1, and the last worker's share counts it.
        # The override keeps its tensors on the host all the same, so each token brings back the
        # hidden state (hidden x 4 bytes) instead of the logits (vocab x 4 bytes: 24x more here).
        argv += ["--rpc", ",".join(rpc_endpoints), *split_devices(device, len(tensor_split) or len(rpc_endpoints))]
        argv += ["--n-gpu-layers", str(worker_layers + 1), "--override-tensor", f"{HOST_TENSORS}=CPU"]
        # No busy-waiting: a split host's threads mostly wait on its workers, and spinning ones
        # take the CPU the node's gateway needs to relay the RPC traffic. Read only by ggml's own
        # thread pool, in builds without OpenMP (macOS: Apple's clang has none); an OpenMP build
        # (Linux) never reads it, and there the split's GOMP_SPINCOUNT does this (cpus.split_environment).
        argv += ["--poll", "0"]
        if len(tensor_split) > 1:
            shares = [*tensor_split[:-1], tensor_split[-1] + 1]
            argv += ["--tensor-split", ",".join(f"{share:g}" for share in shares)]
    return argv + speculation_flags(draft, speculation, device or draft_device, split=bool(rpc_endpoints))


def split_devices(device: str, rpc_devices: int) -> list[str]:
    """A split host's --device when the runner names devices (settings.device): the workers' RPC
    devices (RPC0, RPC1...: numbered across the rpc-servers in --rpc order, as llama.cpp names them)
    and then the named ones ("none": none, the host's blocks on its CPU). It follows --rpc, which
    registers the RPC devices: a --device before it would leave the workers out of the split."""
    if not device:
        return []
    local = [] if device.strip().lower() == "none" else [name.strip() for name in device.split(",") if name.strip()]
    return ["--device", ",".join([f"RPC{index}" for index in range(rpc_devices)] + local)]


def speculation_flags(draft: Path | None, speculation: Speculation, device: str, *, split: bool) -> list[str]:
    """llama-server's flags for speculative decoding: the draft model and the types in use (n-gram
    first: llama.cpp tries its types in that order)."""
    types = [str(speculation)] if speculation != Speculation.NONE else []
    flags: list[str] = []
    if draft is not None:
        types.append(DRAFT_MODEL)
        flags += ["--spec-draft-model", str(draft)]
        if split:
            # The draft follows the model's devices, which on a split host include the workers' RPC
            # devices: each drafted token would cross the network. It stays on the host: its own
            # device when one is named, else the CPU (none offloads nothing, as for the host's blocks).
            flags += ["--spec-draft-device", device or "none"]
    return ["--spec-type", ",".join(types), *flags] if types else []


def rpc_server_argv(binary: Path, port: int, *, threads: int, cache: bool, host: str = "127.0.0.1", device: str = "") -> list[str]:
    """ggml-rpc-server on host:port (127.0.0.1 unless it speaks TLS); it defaults to one thread, so
    threads are always given. It serves every GPU it finds unless `device` (settings.device) names
    some ("none": its CPU): the devices its node's record lists, on which the host deals the blocks."""
    argv = [str(binary), "--host", host, "--port", str(port), "--threads", str(threads)]
    if device:
        argv += ["--device", "CPU" if device.strip().lower() == "none" else device]
    return argv + ["--cache"] if cache else argv


# OpenMP's wait settings, as a llama.cpp user would set them; they reach llama's processes and win
# over the mesh's own choice for a split (services/common/cpus.py split_environment).
OPENMP_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


# Where the GPU libraries are found and which devices a backend uses: a host whose CUDA libraries
# are found only through LD_LIBRARY_PATH cannot start llama-server without it.
LIBRARY_PATHS = ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH")
# Backend settings by prefix: CUDA_VISIBLE_DEVICES and CUDA_*, ROCm's HIP_*/ROCR_*, Metal's MTL_*,
# Vulkan's VK_*, SYCL's ONEAPI_*/ZE_*, NVIDIA's container variables, and ggml's own GGML_*.
BACKEND_PREFIXES = ("CUDA_", "NVIDIA_", "HIP_", "ROCR_", "HSA_", "MTL_", "VK_", "ONEAPI_", "ZE_", "GGML_")


def child_environment(base: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The explicit environment a child gets: only what it needs, nothing of ours (MESH_*: keys,
    tokens), but what finds and drives its GPU."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LLAMA_CACHE", *OPENMP_SETTINGS, *LIBRARY_PATHS)
    kept = {name: base[name] for name in keep if name in base}
    backend = {name: value for name, value in base.items() if name.startswith(BACKEND_PREFIXES)}
    return kept | backend | (extra or {})

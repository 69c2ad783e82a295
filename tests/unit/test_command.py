import re
from pathlib import Path
from typing import Any

import pytest

from services.runner.command import Speculation, child_environment, llama_server_argv, rpc_server_argv


def test_llama_server_binds_loopback_and_names_the_model() -> None:
    argv = llama_server_argv(Path("/bin/llama-server"), Path("/m/x.gguf"), "x", 4321, ctx_size=2048, threads=3, device="")
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[0] == "/bin/llama-server"
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "4321"
    assert pairs["--alias"] == "x" and pairs["--model"] == "/m/x.gguf"
    assert pairs["--ctx-size"] == "2048" and pairs["--threads"] == "3"
    assert "--device" not in argv


def split_host_argv(**overrides: Any) -> list[str]:
    """A split host's argv: two workers of 4 and 2 blocks unless overridden."""
    given: dict[str, Any] = {
        "ctx_size": 1,
        "threads": 1,
        "device": "",
        "rpc_endpoints": ("127.0.0.1:7001", "127.0.0.1:7002"),
        "worker_layers": 6,
        "tensor_split": (4, 2),
    }
    return llama_server_argv(Path("s"), Path("m"), "m", 1, **(given | overrides))


def test_device_is_passed_when_given() -> None:
    argv = llama_server_argv(Path("s"), Path("m"), "m", 1, ctx_size=1, threads=1, device="CUDA0")
    assert argv[argv.index("--device") + 1] == "CUDA0"


@pytest.mark.parametrize(
    ("device", "host_layers", "expected"),
    [("CUDA1", 10, "RPC0,RPC1,CUDA1"), ("none", 0, "RPC0,RPC1"), ("", 0, None)],
)
def test_a_split_host_given_a_device_keeps_its_workers_rpc_devices(device: str, host_layers: int, expected: str | None) -> None:
    argv = split_host_argv(device=device, host_layers=host_layers)
    if expected is None:
        assert "--device" not in argv
    else:
        # After --rpc, which registers the RPC devices llama.cpp would otherwise not know by name.
        assert argv.index("--device") > argv.index("--rpc") and argv[argv.index("--device") + 1] == expected


def test_a_gpu_host_with_two_gpus_and_a_worker_with_two_deal_blocks_per_device() -> None:
    # The worker's 12 blocks over its two RPC devices (placement dealt them), the host's 20 over its
    # two GPUs by memory (24 and 48 GB: 7 and 13), the output layer with the last.
    argv = split_host_argv(rpc_endpoints=("127.0.0.1:7001",), worker_layers=12, tensor_split=(6, 6), host_layers=20, host_weights=(24, 48))
    assert argv[argv.index("--tensor-split") + 1] == "6,6,7,14"


def test_an_rpc_server_serves_the_devices_its_node_names() -> None:
    assert "--device" not in rpc_server_argv(Path("r"), 1, threads=1, cache=True)
    assert rpc_server_argv(Path("r"), 1, threads=1, cache=True, device="CUDA1")[-3:] == ["--device", "CUDA1", "--cache"]
    assert rpc_server_argv(Path("r"), 1, threads=1, cache=False, device="none")[-2:] == ["--device", "CPU"]


def test_a_gpu_split_hosts_draft_runs_on_its_own_gpu_not_on_the_workers() -> None:
    argv = split_host_argv(rpc_endpoints=("127.0.0.1:7001",), tensor_split=(6,), host_layers=10, draft=Path("/m/draft.gguf"), draft_device="CUDA0")
    assert argv[argv.index("--spec-draft-device") + 1] == "CUDA0"


def test_child_environment_keeps_only_what_children_need() -> None:
    env = child_environment({"PATH": "/bin", "MESH_GATEWAY_API_KEY": "secret", "HOME": "/root"})
    assert env == {"PATH": "/bin", "HOME": "/root"}
    # OpenMP's wait settings, as a llama.cpp user sets them, reach llama's processes.
    assert child_environment({"GOMP_SPINCOUNT": "300000", "OMP_WAIT_POLICY": "active", "X": "y"}) == {"GOMP_SPINCOUNT": "300000", "OMP_WAIT_POLICY": "active"}


def test_child_environment_keeps_what_finds_and_drives_the_gpu() -> None:
    gpu = {
        "LD_LIBRARY_PATH": "/usr/local/cuda/lib64",
        "CUDA_VISIBLE_DEVICES": "1",
        "CUDA_HOME": "/usr/local/cuda",
        "GGML_CUDA_ENABLE_UNIFIED_MEMORY": "1",
        "HIP_VISIBLE_DEVICES": "0",
        "MTL_DEBUG_LAYER": "0",
        "VK_ICD_FILENAMES": "/etc/vulkan/icd.d/nvidia_icd.json",
    }
    ours = {"MESH_GOSSIP_JOIN": "mesh1-token", "MESH_GATEWAY_API_KEY": "secret", "AWS_SECRET_ACCESS_KEY": "x", "PYTHONPATH": "/repo"}
    assert child_environment(gpu | ours | {"PATH": "/bin"}) == gpu | {"PATH": "/bin"}
    assert child_environment(gpu, {"GGML_RPC_HASH_THRESHOLD": "0"})["GGML_RPC_HASH_THRESHOLD"] == "0"  # ours win where we set one


def test_split_offloads_worker_blocks_and_keeps_the_output_layer_on_the_host() -> None:
    argv = llama_server_argv(
        Path("s"), Path("m"), "m", 1, ctx_size=1, threads=1, device="", rpc_endpoints=("127.0.0.1:7001", "127.0.0.1:7002"), worker_layers=6, tensor_split=(4, 2)
    )
    pairs = {flag: argv[i + 1] for i, flag in enumerate(argv[:-1]) if flag.startswith("--")}
    assert pairs["--rpc"] == "127.0.0.1:7001,127.0.0.1:7002"
    assert pairs["--n-gpu-layers"] == "7"  # 6 blocks plus the output layer llama.cpp counts with them
    assert pairs["--tensor-split"] == "4,3"
    assert pairs["--poll"] == "0"  # no busy-waiting threads on a split host
    pattern, buffer = pairs["--override-tensor"].rsplit("=", 1)
    assert buffer == "CPU"
    names = ["output.weight", "output_norm.weight", "token_embd.weight", "blk.3.attn_output.weight", "blk.0.ffn_up.weight"]
    assert [name for name in names if re.search(pattern, name)] == names[:3]


def test_a_gpu_host_offloads_every_block_with_the_workers_first_and_its_own_last() -> None:
    argv = split_host_argv(host_layers=10)
    pairs = {flag: argv[i + 1] for i, flag in enumerate(argv[:-1]) if flag.startswith("--")}
    assert pairs["--rpc"] == "127.0.0.1:7001,127.0.0.1:7002"
    assert pairs["--n-gpu-layers"] == "999"
    # llama.cpp lists RPC devices before the GPU: the workers' shares first, the host's last with the output layer.
    assert pairs["--tensor-split"] == "4,2,11"
    assert "--override-tensor" not in pairs  # the output layer stays with the host's last blocks, on its GPU
    assert pairs["--poll"] == "0"


def test_a_single_worker_gpu_split_still_names_both_shares() -> None:
    argv = split_host_argv(rpc_endpoints=("127.0.0.1:7001",), worker_layers=13, tensor_split=(13,), host_layers=19)
    assert argv[argv.index("--tensor-split") + 1] == "13,20"


DRAFT = Path("/m/draft.gguf")
WORKERS = ("127.0.0.1:7001",)


def flags_of(argv: list[str]) -> dict[str, str]:
    return {flag: argv[i + 1] for i, flag in enumerate(argv[:-1]) if flag.startswith("--spec")}


@pytest.mark.parametrize(
    ("draft", "speculation", "device", "rpc_endpoints", "expected"),
    [
        # Nothing asked: llama.cpp's default, no speculation, and no flag of it.
        (None, Speculation.NONE, "", (), {}),
        # A draft model: the draft type; it follows the model's device (no flag needed).
        (DRAFT, Speculation.NONE, "", (), {"--spec-type": "draft-simple", "--spec-draft-model": "/m/draft.gguf"}),
        (DRAFT, Speculation.NONE, "CUDA0", (), {"--spec-type": "draft-simple", "--spec-draft-model": "/m/draft.gguf"}),
        # n-gram speculation needs no file.
        (None, Speculation.NGRAM_SIMPLE, "", (), {"--spec-type": "ngram-simple"}),
        (None, Speculation.NGRAM_MOD, "", WORKERS, {"--spec-type": "ngram-mod"}),
        # Both: n-gram first (llama.cpp tries the types in its own order; the list says both).
        (DRAFT, Speculation.NGRAM_MAP_K, "", (), {"--spec-type": "ngram-map-k,draft-simple", "--spec-draft-model": "/m/draft.gguf"}),
        # A split's host: the draft stays on the host, never on the workers' RPC devices.
        (DRAFT, Speculation.NONE, "", WORKERS, {"--spec-type": "draft-simple", "--spec-draft-model": "/m/draft.gguf", "--spec-draft-device": "none"}),
        (DRAFT, Speculation.NONE, "CUDA0", WORKERS, {"--spec-type": "draft-simple", "--spec-draft-model": "/m/draft.gguf", "--spec-draft-device": "CUDA0"}),
    ],
)
def test_speculation_flags(draft: Path | None, speculation: Speculation, device: str, rpc_endpoints: tuple[str, ...], expected: dict[str, str]) -> None:
    argv = llama_server_argv(
        Path("s"), Path("m"), "m", 1, ctx_size=1, threads=1, device=device, rpc_endpoints=rpc_endpoints, worker_layers=4, draft=draft, speculation=speculation
    )
    assert flags_of(argv) == expected
    # The model itself is untouched: still the one --model, on the devices it had.
    assert argv[argv.index("--model") + 1] == "m" and argv.count("--model") == 1
    assert ("--device" in argv) == bool(device)

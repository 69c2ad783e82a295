"""Accelerators as llama.cpp lists them (recorded `llama-server --list-devices` outputs), the memory a
node offers from them, and the KV cache tiers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.common.devices import GIB, MIB, Device, chosen, list_devices, memory_offered, nvidia_cards, parse_devices, parse_nvidia_smi, refreshed, shares

H200 = """\
ggml_cuda_init: found 1 CUDA devices:
  Device 0: NVIDIA H200, compute capability 9.0, VMM: yes
Available devices:
  CUDA0: NVIDIA H200 (143156 MiB, 142517 MiB free)
"""
TWO_CARDS = """\
Available devices:
  CUDA0: NVIDIA GeForce RTX 4090 (24080 MiB, 23500 MiB free)
  CUDA1: NVIDIA GeForce RTX 3090 (24576 MiB, 2048 MiB free)
  RPC0: 127.0.0.1:50052 (65536 MiB, 65536 MiB free)
"""
# Metal reports the recommended working set (here a 32 GB Mac: about two thirds of it).
MAC = """\
ggml_metal_device_init: GPU name:   Apple M2 Pro
Available devices:
  MTL0: Apple M2 Pro (21845 MiB, 21845 MiB free)
"""
CPU_ONLY = "Available devices:\n  (none)\n"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (H200, (Device("CUDA0", "NVIDIA H200", 143156 * MIB, 142517 * MIB),)),
        (
            TWO_CARDS,
            (Device("CUDA0", "NVIDIA GeForce RTX 4090", 24080 * MIB, 23500 * MIB), Device("CUDA1", "NVIDIA GeForce RTX 3090", 24576 * MIB, 2048 * MIB)),
        ),
        (MAC, (Device("MTL0", "Apple M2 Pro", 21845 * MIB, 21845 * MIB),)),
        (CPU_ONLY, ()),
        ("", ()),
        ("garbage\n  CUDA0: no sizes here\n", ()),
    ],
)
def test_devices_are_read_from_llama_s_own_list(output: str, expected: tuple[Device, ...]) -> None:
    assert parse_devices(output) == expected


def test_used_memory_is_what_is_not_free() -> None:
    (card,) = parse_devices(H200)
    assert card.used_bytes == (143156 - 142517) * MIB


@pytest.mark.parametrize(
    ("output", "ram", "offered"),
    [
        (H200, 32 * GIB, 143156 * MIB),  # GPU memory above the RAM: the GPU's counts
        (TWO_CARDS, 64 * GIB, (24080 + 24576) * MIB),  # every card; the RPC device is another machine's
        (MAC, 32 * GIB, 21845 * MIB),  # Metal's working set, not the unified memory
        (CPU_ONLY, 24 * GIB, 24 * GIB),  # a CPU build (even on a GPU box): the RAM
    ],
)
def test_a_node_offers_its_accelerators_memory_else_its_ram(output: str, ram: int, offered: int) -> None:
    assert memory_offered(parse_devices(output), ram) == offered


@pytest.mark.parametrize(
    ("device", "names"),
    [
        ("", ["CUDA0", "CUDA1"]),  # no --device: llama.cpp uses every card
        ("CUDA1", ["CUDA1"]),
        ("cuda0", ["CUDA0"]),  # llama.cpp matches names in any case
        ("CUDA0, CUDA1", ["CUDA0", "CUDA1"]),
        ("none", []),  # nothing offloaded: the model runs from RAM
    ],
)
def test_a_device_setting_keeps_only_the_devices_it_names(device: str, names: list[str]) -> None:
    assert [d.name for d in chosen(parse_devices(TWO_CARDS), device)] == names


def fake_binary(tmp_path: Path, script: str) -> Path:
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n" + script)
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    return binary


def test_the_binary_is_asked_and_a_failing_one_lists_nothing(tmp_path: Path) -> None:
    listing = fake_binary(tmp_path, f"[ \"$1\" = --list-devices ] && printf '%s' '{H200}'\n")
    assert [d.name for d in list_devices(listing, {})] == ["CUDA0"]
    broken = fake_binary(tmp_path, "echo 'CUDA error: no driver' >&2; exit 1\n")
    assert list_devices(broken, {}) == ()
    assert list_devices(tmp_path / "missing", {}) == ()
    hanging = fake_binary(tmp_path, "sleep 30\n")
    assert list_devices(hanging, {}, timeout=0.5) == ()


# nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader,nounits, two cards
NVIDIA_SMI = "NVIDIA H200, 143771, 9187\nNVIDIA H200, 143771, 1\n"
TWO_H200 = (Device("CUDA0", "NVIDIA H200", 143771 * MIB, 143000 * MIB), Device("CUDA1", "NVIDIA H200", 143771 * MIB, 143000 * MIB))


def test_nvidia_smi_answers_are_read_and_garbage_is_left_out() -> None:
    assert parse_nvidia_smi(NVIDIA_SMI) == (("NVIDIA H200", 143771 * MIB, 9187 * MIB), ("NVIDIA H200", 143771 * MIB, 1 * MIB))
    assert parse_nvidia_smi("NVIDIA H200, [N/A], [N/A]\nFailed to initialize NVML: Driver/library version mismatch\n") == ()
    assert parse_nvidia_smi("A card, with a comma, 81559, 500\n") == (("A card, with a comma", 81559 * MIB, 500 * MIB),)


def test_free_memory_is_refreshed_only_where_the_cards_match_the_devices() -> None:
    now = refreshed(TWO_H200, parse_nvidia_smi(NVIDIA_SMI))
    assert [d.free_bytes for d in now] == [(143771 - 9187) * MIB, (143771 - 1) * MIB]
    assert [d.total_bytes for d in now] == [d.total_bytes for d in TWO_H200]
    assert refreshed(TWO_H200[:1], parse_nvidia_smi(NVIDIA_SMI)) == TWO_H200[:1]  # a visible subset: no guessing
    assert refreshed(TWO_H200, (("NVIDIA H100 80GB HBM3", 81559 * MIB, 0), ("NVIDIA H200", 143771 * MIB, 0))) == TWO_H200  # another card
    metal = (Device("MTL0", "Apple M2 Pro", 21 * GIB, 21 * GIB),)
    assert refreshed(metal, parse_nvidia_smi(NVIDIA_SMI)) == metal
    assert refreshed(TWO_H200, ()) == TWO_H200  # no nvidia-smi


def test_nvidia_smi_is_asked_when_it_is_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_binary(tmp_path, f"[ \"$1\" = --query-gpu=name,memory.total,memory.used ] && printf '%s' '{NVIDIA_SMI}'\n").rename(tmp_path / "nvidia-smi")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert [name for name, _, _ in nvidia_cards()] == ["NVIDIA H200", "NVIDIA H200"]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert nvidia_cards() == ()


def test_the_runner_publishes_a_cards_memory_in_use_once_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from services.runner import server

    answers = iter([parse_nvidia_smi("NVIDIA H200, 143771, 1000\nNVIDIA H200, 143771, 1000\n"), parse_nvidia_smi(NVIDIA_SMI)])
    monkeypatch.setattr(server.devices, "nvidia_cards", lambda: next(answers, parse_nvidia_smi(NVIDIA_SMI)))
    monkeypatch.setattr(server, "DEVICE_REFRESH_S", 0.01)

    async def scenario() -> list[tuple[int, ...]]:
        listed = asyncio.get_running_loop().create_future()
        listed.set_result(TWO_H200)
        in_use, seen = server.DevicesInUse(listed), list[tuple[int, ...]]()

        async def publish() -> None:
            seen.append(tuple(d.free_bytes for d in in_use.current))

        following = asyncio.create_task(in_use.follow(publish))
        await asyncio.sleep(0.3)
        following.cancel()
        return seen

    # 143000 MiB free at start; 142771 next (less than 256 MiB moved: not published); then CUDA0's 9 GB model.
    assert asyncio.run(scenario()) == [((143771 - 9187) * MIB, (143771 - 1) * MIB)]


@pytest.mark.parametrize(
    ("blocks", "weights", "expected"),
    [
        (16, [80, 80], [8, 8]),
        (15, [80, 80], [8, 7]),  # the remainder to the earlier device
        (10, [24, 48], [3, 7]),
        (13, [1], [13]),
        (5, [80, 0], [5, 0]),
        (0, [80, 80], [0, 0]),
    ],
)
def test_blocks_are_dealt_over_devices_by_memory_in_whole_blocks(blocks: int, weights: list[int], expected: list[int]) -> None:
    dealt = shares(blocks, weights)
    assert dealt == expected and sum(dealt) == blocks

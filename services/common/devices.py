"""This machine's accelerators as llama.cpp sees them, and the memory a node offers.

The devices come from the llama-server binary the node runs (`--list-devices`): what that build can
use, with the memory each backend reports (CUDA: the card's memory; Metal: the recommended working
set, which macOS caps below the unified memory; Vulkan, ROCm... the same way). A GPU card the build
cannot use (a CPU build on a GPU box) is no device, so the node offers RAM, as the model will run
from it. How much of an NVIDIA card is in use is read again while the node runs (nvidia-smi; other
backends keep what the listing said). Parsing and the tiers are pure; list_devices() and
nvidia_cards() run the binaries.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from services.common.records import Device

MIB = 1024**2
GIB = 1024**3

# "  CUDA0: NVIDIA H200 (143156 MiB, 142517 MiB free)" (llama.cpp common/arg.cpp, list devices)
_DEVICE = re.compile(r"^\s+(?P<name>[^:\s]+): (?P<description>.*) \((?P<total>\d+) MiB, (?P<free>\d+) MiB free\)\s*$")


def parse_devices(text: str) -> tuple[Device, ...]:
    """The devices in `llama-server --list-devices` output; RPC devices (other machines) are not ours."""
    found: list[Device] = []
    for line in text.splitlines():
        match = _DEVICE.match(line)
        if match and not match["name"].upper().startswith("RPC"):
            found.append(Device(match["name"], match["description"], int(match["total"]) * MIB, int(match["free"]) * MIB))
    return tuple(found)


def list_devices(binary: Path, environment: dict[str, str], timeout: float = 60.0) -> tuple[Device, ...]:
    """The devices the llama-server at `binary` would use; none when it cannot tell (it fails, or
    hangs on a broken driver): the node then offers RAM, which is what a CPU run uses."""
    try:
        done = subprocess.run([str(binary), "--list-devices"], capture_output=True, text=True, errors="replace", timeout=timeout, env=environment, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return parse_devices(done.stdout) if done.returncode == 0 else ()


# nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader,nounits: "NVIDIA H200, 143771, 1187"
NVIDIA_SMI_QUERY = ("--query-gpu=name,memory.total,memory.used", "--format=csv,noheader,nounits")


def parse_nvidia_smi(text: str) -> tuple[tuple[str, int, int], ...]:
    """(name, total bytes, used bytes) of each card in nvidia-smi's CSV answer to NVIDIA_SMI_QUERY;
    lines that do not read as one (a "[N/A]", a warning) are left out."""
    cards: list[tuple[str, int, int]] = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.rsplit(",", 2)]
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            cards.append((parts[0], int(parts[1]) * MIB, int(parts[2]) * MIB))
    return tuple(cards)


def nvidia_cards(timeout: float = 10.0) -> tuple[tuple[str, int, int], ...]:
    """The NVIDIA cards' memory now, as nvidia-smi says; none without nvidia-smi or an answer."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return ()
    try:
        done = subprocess.run([binary, *NVIDIA_SMI_QUERY], capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else ()


def refreshed(devices: tuple[Device, ...], cards: tuple[tuple[str, int, int], ...]) -> tuple[Device, ...]:
    """The devices with their free memory as `cards` (nvidia_cards) says now. CUDA devices are
    matched to cards in order, and only when there are as many and each card's name is in its
    device's description with the same total memory (within 2%): a CUDA_VISIBLE_DEVICES subset or
    another order leaves every device as it was, as do other backends (Metal, Vulkan...)."""
    cuda = [d for d in devices if d.name.upper().startswith("CUDA")]
    if not cuda or len(cuda) != len(cards):
        return devices
    if not all(name in d.description and abs(total - d.total_bytes) <= 0.02 * d.total_bytes for d, (name, total, _) in zip(cuda, cards, strict=True)):
        return devices
    free = {d.name: max(0, total - used) for d, (_, total, used) in zip(cuda, cards, strict=True)}
    return tuple(replace(d, free_bytes=min(d.total_bytes, free[d.name])) if d.name in free else d for d in devices)


def chosen(devices: tuple[Device, ...], device: str) -> tuple[Device, ...]:
    """The devices a llama-server started with `--device` (runner settings) uses: those it names, as
    llama.cpp matches them (any case, comma-separated; "none": none), every one when it names none."""
    if not device:
        return devices
    wanted = {name.strip().lower() for name in device.split(",")}
    return tuple(d for d in devices if d.name.lower() in wanted)


def shares(blocks: int, weights: Sequence[int]) -> list[int]:
    """`blocks` dealt over devices in proportion to `weights` (their memory), whole blocks each
    (largest remainders first, ties to the earlier device): llama.cpp's --tensor-split entries for
    one node's devices, which add up to exactly that node's blocks."""
    total = sum(weights)
    if total <= 0:
        return [blocks] + [0] * (len(weights) - 1) if weights else []
    exact = [blocks * weight / total for weight in weights]
    dealt = [int(share) for share in exact]
    for index in sorted(range(len(weights)), key=lambda i: (dealt[i] - exact[i], i))[: blocks - sum(dealt)]:
        dealt[index] += 1
    return dealt


def memory_offered(devices: tuple[Device, ...], ram_bytes: int) -> int:
    """What a node offers the mesh: its accelerators' memory (llama.cpp spreads a model over every
    device it lists), else its RAM."""
    return sum(device.total_bytes for device in devices) or ram_bytes

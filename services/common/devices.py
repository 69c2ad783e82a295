"""This machine's accelerators as llama.cpp sees them, and the memory a node offers.

The devices come from the llama-server binary the node runs (`--list-devices`): what that build can
use, with the memory each backend reports (CUDA: the card's memory; Metal: the recommended working
set, which macOS caps below the unified memory; Vulkan, ROCm... the same way). A GPU card the build
cannot use (a CPU build on a GPU box) is no device, so the node offers RAM, as the model will run
from it. Parsing and the tiers are pure; list_devices() runs the binary.
"""

from __future__ import annotations

import re
import subprocess
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


def chosen(devices: tuple[Device, ...], device: str) -> tuple[Device, ...]:
    """The devices a llama-server started with `--device` (runner settings) uses: those it names, as
    llama.cpp matches them (any case, comma-separated; "none": none), every one when it names none."""
    if not device:
        return devices
    wanted = {name.strip().lower() for name in device.split(",")}
    return tuple(d for d in devices if d.name.lower() in wanted)


def memory_offered(devices: tuple[Device, ...], ram_bytes: int) -> int:
    """What a node offers the mesh: its accelerators' memory (llama.cpp spreads a model over every
    device it lists), else its RAM."""
    return sum(device.total_bytes for device in devices) or ram_bytes

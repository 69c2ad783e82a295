"""Which CPU cores a node's processes run on.

On a split, the mesh's own Python (the gateway relaying RPC traffic over QUIC, gossip, placement)
wakes several times per token. Sharing cores with llama-server's or rpc-server's threads, which
wait for each other at every operation, each wake-up stalls all of them (measured on a 16-core
machine, two nodes of 6 cores: 0.66-0.73x stock llama.cpp RPC, against ~0.9x with the Python moved
off the compute cores). So on machines of RESERVE_FROM cores or more, gateway, gossip and placement
keep to one core and a split's llama-server and rpc-server to the others. A model served alone
keeps every core (the services stay on theirs): there the gateway wakes once per token and costs
nothing measurable.

Pure planning plus thin wrappers over os.sched_*affinity, which exist on Linux only; elsewhere
(macOS) nothing is pinned and every process may use every core.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

RESERVE_FROM = 4  # fewer cores than this: giving one up to the mesh costs more than it saves
SERVICES_ON_CORE = ("gateway", "gossip", "placement")  # the runner stays on all cores: its children inherit them


@dataclass(frozen=True)
class CpuPlan:
    every: tuple[int, ...]  # all cores the node may use (a model served alone runs on these)
    services: tuple[int, ...]  # where gateway, gossip and placement run
    compute: tuple[int, ...]  # where a split's llama-server and rpc-server run

    @property
    def reserved(self) -> bool:
        return self.services != self.every


def plan(cpus: set[int] | list[int] | tuple[int, ...], reserve: bool = True) -> CpuPlan:
    """The last core for the mesh's services and the rest for split compute, when there are
    enough cores and `reserve` is on; otherwise everything everywhere."""
    every = tuple(sorted(set(cpus)))
    if not reserve or len(every) < RESERVE_FROM:
        return CpuPlan(every, every, every)
    return CpuPlan(every, every[-1:], every[:-1])


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity")


def node_plan(service_core: bool) -> CpuPlan:
    """This node's plan; nothing is reserved where nothing can be pinned (a reserved core with no
    pinning would only cost a split one thread)."""
    return plan(node_cpus(), service_core and can_pin())


def node_cpus() -> tuple[int, ...]:
    """The cores this process may run on (what `taskset` or a container allows), else all."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def pinned_argv(argv: list[str], cpus: tuple[int, ...]) -> list[str]:
    """argv started on `cpus` from its first instruction (with util-linux's taskset), so every
    thread it ever starts stays there; unchanged where taskset is missing (see `pin`)."""
    taskset = shutil.which("taskset")
    if not cpus or not taskset or not can_pin():
        return argv
    return [taskset, "--cpu-list", ",".join(map(str, cpus)), *argv]


def pin(pid: int, cpus: tuple[int, ...]) -> bool:
    """Restrict process `pid` (0: this one) to `cpus`; threads it starts later inherit this
    (threads it already has do not). False where the platform cannot (macOS) or the process is gone."""
    if not can_pin() or not cpus:
        return False
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError:  # the process already exited, or the cores are not ours: the caller logs it
        return False
    return True

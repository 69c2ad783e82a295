"""How many threads a node's llama processes start, and at what priority the mesh's services run.

On a split, the mesh's own Python (the gateway relaying RPC traffic over QUIC, gossip, placement)
wakes several times per token. ggml's threads wait for each other at every operation, so each
wake-up that takes a core from one of them stalls them all (measured on a 16-core machine, two
nodes of 6 cores: 0.66-0.73x stock llama.cpp RPC with the services sharing the compute cores).

The way out, Linux only (elsewhere, macOS, every process runs at normal priority): services at
idle priority (on by default, MESH_NODE_SERVICES_IDLE): gateway, gossip and placement run as
SCHED_IDLE, which never preempts a normal thread, so they run in the gaps when llama's threads
wait on the network, exactly when the relay is needed. llama's OpenMP threads then must not
busy-wait long after each graph (GOMP_SPINCOUNT below), or the gaps vanish. llama keeps every
core (a core set aside for the services measured no better: bench/README.md, split_cores).

Threads: as many as llama.cpp itself would start (`math_cores`): one per physical core, and on
Apple silicon one per performance core. The hardware threads that leaves (a core's second SMT
thread, efficiency cores) are where the mesh's Python runs without taking time from llama's
threads, and there llama keeps libgomp's long spin (split_environment): measured with the
services on cores of their own (two nodes of 6 cores), the split ran at 0.95-0.99x stock RPC;
sharing llama's cores, 0.82-0.91x (README, bench/split_cores.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Fewer cores than this and the services stay at normal priority: on one core anything CPU-bound
# at normal priority (a generation, the runner hashing tensors to prime a cache) leaves idle-priority
# services no time at all, gossip misses its pings, peers declare the node dead and the split is
# re-planned over and over (seen with a node pinned to one core).
IDLE_FROM = 2
# The runner keeps normal priority: its children would inherit idle priority, and an unprivileged
# process cannot raise them back.
SERVICES = ("gateway", "gossip", "placement")
# OpenMP threads of a split's llama processes spin this many rounds after each graph, then sleep
# (libgomp's default, 300,000, is ~10 ms on a Xeon: they would spin through the whole network
# round trip and keep idle-priority services off every core). Measured on par with no spinning
# (OMP_WAIT_POLICY=passive).
SPLIT_OPENMP_SPIN = "20000"
SYSFS_CPUS = Path("/sys/devices/system/cpu")  # Linux: each logical CPU's topology/thread_siblings_list


def can_idle() -> bool:
    """The platform has idle priority and this node has the cores for it (IDLE_FROM)."""
    return hasattr(os, "SCHED_IDLE") and hasattr(os, "sched_setscheduler") and len(node_cpus()) >= IDLE_FROM


def run_at_idle_priority() -> bool:
    """This thread (and threads and processes it starts later) runs only when no normal thread
    wants the core; call it before starting any thread. False where the platform cannot."""
    if not can_idle():
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:  # a sandbox that forbids it: the caller logs that the services stay at normal priority
        return False
    return True


def split_environment(services_idle: bool) -> dict[str, str]:
    """What a split's llama-server and rpc-server get in their environment for the services'
    priority to work (see SPLIT_OPENMP_SPIN). Nothing where the user set OpenMP's wait policy, and
    nothing where llama's threads leave hardware threads free (SMT siblings: math_cores): the
    services run there, and llama's threads keep libgomp's long spin, as stock's do (measured with
    the services on cores of their own: 0.95-0.99x stock RPC with libgomp's spin, 0.85-0.89x with
    the short one; bench/split_cores.py)."""
    if not (services_idle and can_idle()) or os.environ.keys() & {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"}:
        return {}
    cores = node_cpus()
    return {} if math_cores(cores) < len(cores) else {"GOMP_SPINCOUNT": SPLIT_OPENMP_SPIN}


def node_cpus() -> tuple[int, ...]:
    """The cores this process may run on (what `taskset` or a container allows), else all."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def math_cores(cpus: tuple[int, ...], sysfs: Path | None = None) -> int:
    """How many threads llama.cpp would start on `cpus` by itself (common_cpu_get_num_math): one per
    physical core among them (Linux: logical CPUs listing the same thread siblings share a core;
    a CPU without topology counts as a core), on macOS the performance cores. Intel's hybrid
    efficiency cores are counted as cores here (llama.cpp leaves them out)."""
    if sys.platform == "darwin":
        return max(1, min(len(cpus) or 1, _sysctl_int("hw.perflevel0.physicalcpu") or _sysctl_int("hw.physicalcpu") or len(cpus)))
    cores: set[str] = set()
    for cpu in cpus:
        try:
            cores.add(((sysfs or SYSFS_CPUS) / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:  # no topology (some containers): a core of its own
            cores.add(str(cpu))
    return max(1, len(cores))


def _sysctl_int(name: str) -> int:
    try:
        return int(subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=True).stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0

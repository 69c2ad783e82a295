"""How many threads llama's processes start, and the priority that leaves the mesh's services (services/common/cpus.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from services.common import cpus
from services.runner import sizing
from services.runner.servers import LlamaServers, Split
from services.runner.settings import RunnerSettings


@pytest.fixture(autouse=True)
def no_model_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The models here are names only: their shape (for sizing) is made up."""
    monkeypatch.setattr(sizing, "shape_of", lambda path: sizing.Shape(10**8, 30, 3, 64, 64, 8192))


@pytest.fixture
def flat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever this machine is: llama's threads take every CPU (no SMT, no efficiency cores) and
    the user set no OpenMP wait policy."""
    monkeypatch.setattr(cpus, "math_cores", lambda cores, sysfs=None: max(1, len(cores)))
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)


def started(cores: tuple[int, ...], split: Split, threads: int | None = None) -> list[str]:
    """The argv the runner gives a llama-server it would start on a node of `cores`."""
    servers = LlamaServers(RunnerSettings(threads=threads), Path("/nonexistent"), Path("/bin"), Path("/nonexistent"), cores)
    captured = {}
    servers._start = lambda model_id, kind, path, supervisor, *served: captured.update(supervisor=supervisor)
    servers.state_of = lambda model_id, kind="": None
    servers.serve("m", Path("/models/m.gguf"), split)
    return captured["supervisor"].build_argv(1234)


def threads_in(argv: list[str]) -> int:
    return int(argv[argv.index("--threads") + 1])


def test_a_split_host_and_a_model_alone_both_use_every_core(monkeypatch, flat) -> None:
    monkeypatch.setattr("services.runner.binaries.binary", lambda name, folder: Path(f"/bin/{name}"))
    cores = tuple(range(6))
    assert threads_in(started(cores, Split(rpc_endpoints=("127.0.0.1:5000",), worker_layers=4, tensor_split=(4.0,)))) == 6
    assert threads_in(started(cores, Split())) == 6
    # An explicit MESH_RUNNER_THREADS wins over the core count.
    assert threads_in(started(cores, Split(rpc_endpoints=("127.0.0.1:5000",), worker_layers=4, tensor_split=(4.0,)), threads=3)) == 3


def siblings(root: Path, groups: list[str]) -> Path:
    """A fake /sys/devices/system/cpu where each group ("0,4" or "2-3") is one core's hardware threads."""
    for group in groups:
        first, *_ = group.replace("-", ",").split(",")
        members = range(int(first), int(group.split("-")[1]) + 1) if "-" in group else map(int, group.split(","))
        for cpu in members:
            (root / f"cpu{cpu}" / "topology").mkdir(parents=True)
            (root / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text(group + "\n")
    return root


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS asks sysctl for its performance cores")
@pytest.mark.parametrize(
    ("groups", "given", "threads"),
    [
        (["0", "1"], (0, 1), 2),  # no SMT: one thread per CPU
        (["0,4", "1,5", "2,6", "3,7"], tuple(range(8)), 4),  # 4 cores x 2 hardware threads: llama.cpp starts 4
        (["0,4", "1,5", "2,6", "3,7"], (0, 1, 4), 2),  # a node confined by taskset counts only its cores
        (["0-1", "2-3"], (0, 1, 2, 3), 2),  # siblings written as a range
        ([], (0, 1, 2), 3),  # no topology (a container): each CPU a core of its own
        ([], (), 1),
    ],
)
def test_threads_are_what_llama_cpp_would_start(tmp_path: Path, groups: list[str], given: tuple[int, ...], threads: int) -> None:
    assert cpus.math_cores(given, siblings(tmp_path, groups)) == threads


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS asks sysctl for its performance cores")
def test_the_runner_starts_one_thread_per_core_and_leaves_the_second_hardware_threads(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr("services.runner.binaries.binary", lambda name, folder: Path(f"/bin/{name}"))
    monkeypatch.setattr(cpus, "SYSFS_CPUS", siblings(tmp_path, ["0,4", "1,5", "2,6", "3,7"]))
    assert threads_in(started(tuple(range(8)), Split(rpc_endpoints=("127.0.0.1:5000",), worker_layers=4, tensor_split=(4.0,)))) == 4
    assert threads_in(started(tuple(range(8)), Split())) == 4


def test_a_split_gets_the_spin_limit_when_services_idle_and_alone_does_not(monkeypatch, flat) -> None:
    monkeypatch.setattr("services.runner.binaries.binary", lambda name, folder: Path(f"/bin/{name}"))
    monkeypatch.setattr(cpus, "can_idle", lambda: True)
    assert cpus.split_environment(services_idle=False) == {}
    servers = LlamaServers(
        RunnerSettings(),
        Path("/nonexistent"),
        Path("/bin"),
        Path("/nonexistent"),
        tuple(range(6)),
        cpus.split_environment(services_idle=True),
    )
    captured = {}
    servers._start = lambda model_id, kind, path, supervisor, *served: captured.update(supervisor=supervisor)
    servers.state_of = lambda model_id, kind="": None
    servers.serve("m", Path("/models/m.gguf"), Split(rpc_endpoints=("127.0.0.1:5000",), worker_layers=4, tensor_split=(4.0,)))
    host = captured["supervisor"]
    assert host.environment["GOMP_SPINCOUNT"] == cpus.SPLIT_OPENMP_SPIN and threads_in(host.build_argv(1)) == 6
    servers.serve("alone", Path("/models/alone.gguf"), Split())
    assert "GOMP_SPINCOUNT" not in captured["supervisor"].environment
    monkeypatch.setattr(cpus, "can_idle", lambda: False)  # macOS: no idle priority, nothing to make room for
    assert cpus.split_environment(services_idle=True) == {}


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS asks sysctl for its performance cores")
def test_llama_keeps_libgomps_spin_where_it_leaves_hardware_threads_to_the_services(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cpus, "can_idle", lambda: True)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(cpus, "node_cpus", lambda: tuple(range(8)))
    monkeypatch.setattr(cpus, "SYSFS_CPUS", siblings(tmp_path / "smt", ["0,4", "1,5", "2,6", "3,7"]))
    assert cpus.split_environment(services_idle=True) == {}  # 4 threads for llama, 4 siblings for the services
    monkeypatch.setattr(cpus, "SYSFS_CPUS", siblings(tmp_path / "flat", [str(cpu) for cpu in range(8)]))
    assert cpus.split_environment(services_idle=True) == {"GOMP_SPINCOUNT": cpus.SPLIT_OPENMP_SPIN}  # llama on every thread


@pytest.mark.parametrize("setting", ["GOMP_SPINCOUNT", "OMP_WAIT_POLICY"])
def test_the_users_openmp_wait_setting_wins_over_the_split_spin_limit(monkeypatch, flat, setting: str) -> None:
    monkeypatch.setattr(cpus, "can_idle", lambda: True)
    assert cpus.split_environment(services_idle=True) == {"GOMP_SPINCOUNT": cpus.SPLIT_OPENMP_SPIN}
    monkeypatch.setenv(setting, "300000" if setting == "GOMP_SPINCOUNT" else "active")
    assert cpus.split_environment(services_idle=True) == {}


IDLE_CHILD = """
import os, threading
from services.common import cpus
assert cpus.run_at_idle_priority()
seen = []
thread = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))
thread.start(); thread.join()
print(os.sched_getscheduler(0) == os.SCHED_IDLE, seen == [os.SCHED_IDLE])
"""


@pytest.mark.skipif(not cpus.can_idle(), reason="no idle scheduling policy on this platform")
def test_idle_priority_holds_for_the_service_and_the_threads_it_starts_later() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", IDLE_CHILD], capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.split() == ["True", "True"], result.stderr


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="no idle scheduling policy on this platform")
@pytest.mark.parametrize(("cores", "idle"), [({0}, False), ({0, 1}, True), (set(range(8)), True)])
def test_a_one_core_node_keeps_its_services_at_normal_priority(monkeypatch: pytest.MonkeyPatch, flat, cores: set[int], idle: bool) -> None:
    # One core: a generation or priming's hashing at normal priority would starve them entirely.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    assert cpus.can_idle() is idle
    assert (cpus.split_environment(services_idle=True) != {}) is idle

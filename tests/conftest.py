from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common import llama_pin
from services.common.settings import NodeSettings
from tests.nodes import NodeProcess, stop_all

SMOLLM2 = "SmolLM2-135M-Instruct"

# Under CI=true a skip is a failure (tests/ci_skips.py).
pytest_plugins = ["tests.ci_skips", "pytester"]


@pytest.fixture(scope="session")
def llama_bin_dir() -> Path:
    folder = llama_pin.bin_dir(NodeSettings().cache)  # where `make llama` builds (MESH_LLAMA_BIN aside)
    if not (folder / "llama-server").is_file():
        raise RuntimeError(f"llama-server not built in {folder}: run `make llama` (make test does)")
    return folder


@pytest.fixture
def start_node(tmp_path: Path, llama_bin_dir: Path) -> Iterator:
    """Start a node with the given CLI args; every node started is stopped at teardown."""
    started: list[NodeProcess] = []

    def start(*args: str, name: str = "node") -> NodeProcess:
        node = NodeProcess(tmp_path / f"{name}{len(started)}", *args).start()
        started.append(node)
        return node

    yield start
    stop_all(started)


@pytest.fixture
def mesh_bed(tmp_path: Path, llama_bin_dir: Path) -> Iterator:
    from tests.meshbed import MeshBed

    bed = MeshBed(tmp_path)
    yield bed
    bed.close()

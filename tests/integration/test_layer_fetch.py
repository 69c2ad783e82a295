"""A split's worker with no copy of the model fetches from a local Hub (tests/hub.py, through the
real huggingface_hub client) only the GGUF header, the fingerprint's samples and its blocks'
tensors, into a partial file that priming reads as the whole file; later calls fetch only what is
missing, a new file at the same path starts over, and a split GGUF is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from huggingface_hub import constants

from services.common.settings import NodeSettings
from services.runner import layer_fetch
from services.runner.fingerprint import fingerprint_file
from services.runner.hub_files import DownloadError
from services.runner.layer_fetch import LayerFile, fetch_layers, layers_path
from services.runner.models import resolve
from services.runner.priming import prime, tensors_of
from tests.hub import LocalHub
from tests.synthetic import DenseShape, write_dense

pytestmark = pytest.mark.integration

REPO = "testorg/Synthetic-GGUF"
FILE = "Synthetic-F16.gguf"
# 8 blocks of ~12 MB and a ~75 MB embedding (SmolLM2's vocabulary): 5% of the file is ~9 MB, well
# above the header (~2 MB with the tokenizer) and the fingerprint's samples (1 MiB).
SHAPE = DenseShape(layers=8, hidden=768, ffn=2048, heads=12, kv_heads=4)
SPLIT = (4, 4)  # the host and one worker, which holds blocks 4-7


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The served model, and a smaller one of another seed to replace it on the Hub (written once)."""
    folder = tmp_path_factory.mktemp("served")
    tokenizer = resolve("SmolLM2-135M-Instruct", folder).path
    return {
        "model": write_dense(folder / "model.gguf", SHAPE, tokenizer, seed=1),
        "other": write_dense(folder / "other.gguf", DenseShape(layers=8, hidden=256, ffn=512, heads=4, kv_heads=2), tokenizer, seed=2),
    }


@pytest.fixture
def hub(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    served = LocalHub()
    served.add(REPO, FILE, models["model"])
    # huggingface_hub reads HF_ENDPOINT once, at import: point its constants at the local hub instead.
    monkeypatch.setattr(constants, "ENDPOINT", served.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", served.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    yield served
    served.close()


@cache
def served_tensors(path: Path, blocks: range) -> list[tuple[str, int, int]]:
    """tensors_of a served file, read once: gguf's reader takes seconds over SmolLM2's tokenizer."""
    return tensors_of(path, blocks)


def share_of(path: Path, blocks: range) -> int:
    return sum(size for _, _, size in served_tensors(path, blocks))


def assert_tensors_identical(partial: Path, full: Path, blocks: range) -> None:
    with partial.open("rb") as got, full.open("rb") as want:
        for name, offset, size in served_tensors(full, blocks):
            got.seek(offset)
            want.seek(offset)
            assert got.read(size) == want.read(size), name


def test_a_worker_fetches_its_blocks_the_header_and_the_samples_only(tmp_path: Path, hub: LocalHub, models: dict[str, Path]) -> None:
    full = models["model"]
    progress: list[tuple[int, int]] = []
    fetched = fetch_layers(REPO, FILE, tmp_path, SPLIT, 0, on_progress=lambda done, total: progress.append((done, total)))
    size = full.stat().st_size
    share = share_of(full, range(4, 8))
    assert fetched.blocks == range(4, 8)
    assert fetched.path == layers_path(tmp_path, REPO, FILE) and not fetched.path.name.endswith(".gguf")
    assert fetched.size_bytes == size == fetched.path.stat().st_size
    assert share < hub.sent[FILE] == fetched.fetched_bytes == fetched.held_bytes < share + size // 20
    assert progress[-1] == (fetched.fetched_bytes, fetched.fetched_bytes)
    # The holes take no disk: the file holds about what was fetched.
    assert fetched.path.stat().st_blocks * 512 < fetched.held_bytes + size // 20
    assert tensors_of(fetched.path, fetched.blocks) == served_tensors(full, fetched.blocks)
    assert_tensors_identical(fetched.path, full, fetched.blocks)
    assert fetched.fingerprint == fingerprint_file(fetched.path) == fingerprint_file(full)


def test_a_header_longer_than_the_first_request_is_grown_by_its_tail_only(
    tmp_path: Path, hub: LocalHub, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 48 KiB, doubled, reaches 1.5 MiB before the ~1.8 MB header ends: 6 requests grow it.
    monkeypatch.setattr(layer_fetch, "FIRST_HEADER_BYTES", 48 << 10)
    fetched = fetch_layers(REPO, FILE, tmp_path, SPLIT, 0)
    assert hub.sent[FILE] == fetched.fetched_bytes == fetched.held_bytes  # no byte twice
    assert fetched.held_bytes < share_of(models["model"], range(4, 8)) + (6 << 20)
    assert_tensors_identical(fetched.path, models["model"], fetched.blocks)
    assert fetched.fingerprint == fingerprint_file(models["model"])


def test_priming_from_the_partial_file_writes_the_full_files_cache(tmp_path: Path, hub: LocalHub, models: dict[str, Path]) -> None:
    fetched = fetch_layers(REPO, FILE, tmp_path / "models", SPLIT, 0)
    cache_root = NodeSettings().cache
    from_partial = prime(fetched.path, tmp_path / "partial-cache", fetched.blocks, tmp_path / "partial.txt", cache_root)
    from_full = prime(models["model"], tmp_path / "full-cache", fetched.blocks, tmp_path / "full.txt", cache_root)
    assert from_partial == from_full
    assert (tmp_path / "partial.txt").read_text() == (tmp_path / "full.txt").read_text()
    assert sorted(file.name for file in (tmp_path / "partial-cache" / "rpc").iterdir()) == sorted(
        file.name for file in (tmp_path / "full-cache" / "rpc").iterdir()
    )


def test_a_second_call_fetches_nothing_and_other_blocks_only_the_new_ones(tmp_path: Path, hub: LocalHub, models: dict[str, Path]) -> None:
    first = fetch_layers(REPO, FILE, tmp_path, SPLIT, 0)
    again = fetch_layers(REPO, FILE, tmp_path, SPLIT, 0)
    assert again == LayerFile(first.path, first.blocks, 0, first.held_bytes, first.size_bytes, first.fingerprint)
    assert hub.sent[FILE] == first.fetched_bytes
    # A 3-node split in which this node holds blocks 2-5: only blocks 2 and 3 are new.
    wider = fetch_layers(REPO, FILE, tmp_path, (2, 4, 2), 0)
    new = share_of(models["model"], range(2, 4))
    assert wider.blocks == range(2, 6)
    # Less what the fingerprint samples already fetched of them (16 x 64 KiB in all), more the padding between ranges.
    assert new - (1 << 20) <= wider.fetched_bytes == hub.sent[FILE] - first.fetched_bytes < new + (64 << 10) * 4
    assert wider.held_bytes == first.held_bytes + wider.fetched_bytes
    assert_tensors_identical(wider.path, models["model"], range(2, 8))


def test_a_cut_call_fetches_only_what_its_sidecar_lacks(tmp_path: Path, hub: LocalHub, models: dict[str, Path]) -> None:
    first = fetch_layers(REPO, FILE, tmp_path, SPLIT, 0)
    sidecar = first.path.with_name(first.path.name + ".json")
    recorded = json.loads(sidecar.read_text())
    start, stop = recorded["ranges"][-1]
    cut = (start + stop) // 2
    # As if the call had been killed half-way through its last range: the rest is not claimed.
    sidecar.write_text(json.dumps(recorded | {"ranges": [*recorded["ranges"][:-1], [start, cut]]}))
    resumed = fetch_layers(REPO, FILE, tmp_path, SPLIT, 0)
    assert resumed.fetched_bytes == stop - cut == hub.sent[FILE] - first.fetched_bytes
    assert_tensors_identical(resumed.path, models["model"], resumed.blocks)


def test_another_file_at_the_same_path_starts_over(tmp_path: Path, hub: LocalHub, models: dict[str, Path]) -> None:
    first = fetch_layers(REPO, FILE, tmp_path, SPLIT, 0)
    hub.add(REPO, FILE, models["other"])
    hub.sent.clear()
    replaced = fetch_layers(REPO, FILE, tmp_path, SPLIT, 0)
    other = models["other"]
    assert replaced.size_bytes == other.stat().st_size != first.size_bytes
    assert replaced.fetched_bytes == replaced.held_bytes == hub.sent[FILE]  # nothing of the old file was kept
    assert replaced.fingerprint == fingerprint_file(other) != first.fingerprint
    assert_tensors_identical(replaced.path, other, range(4, 8))


def test_a_split_gguf_is_refused_in_one_line(tmp_path: Path, hub: LocalHub) -> None:
    with pytest.raises(DownloadError, match=r"^split/Model-00001-of-00002\.gguf is a split GGUF[^\n]*$"):
        fetch_layers(REPO, "split/Model-00001-of-00002.gguf", tmp_path, SPLIT, 0)
    assert not hub.sent

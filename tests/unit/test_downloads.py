"""downloads.py without a network: a split model's parts, what is still to fetch, the disk space
check (one line, exit 2 from the CLI, before any byte is fetched), and the catalog's extra entries."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from services.cli import main
from services.cli.flags import UsageError
from services.cli.model_files import entry_named
from services.common.catalog import CATALOG, CatalogEntry, load
from services.runner import downloads
from services.runner.downloads import RemoteFile, check_space, missing_bytes, partial_path
from services.runner.hub_files import DownloadError, downloaded_path, part_files

GB = 10**9


def entry(file: str) -> CatalogEntry:
    return CatalogEntry(name="M", file=file, size_bytes=GB, quant="Q4_K_M", repo="org/M-GGUF")


@pytest.mark.parametrize(
    ("file", "parts"),
    [
        ("M-Q4_K_M.gguf", ("M-Q4_K_M.gguf",)),
        ("M-00001-of-00002.gguf", ("M-00001-of-00002.gguf", "M-00002-of-00002.gguf")),
        ("Q4/M-Q4-00001-of-00003.gguf", ("Q4/M-Q4-00001-of-00003.gguf", "Q4/M-Q4-00002-of-00003.gguf", "Q4/M-Q4-00003-of-00003.gguf")),
    ],
)
def test_every_part_of_a_split_model(file: str, parts: tuple[str, ...]) -> None:
    assert part_files(entry(file)) == parts


def test_a_model_is_downloaded_once_every_part_is(tmp_path: Path) -> None:
    model = entry("M-00001-of-00002.gguf")
    folder = tmp_path / "org" / "M-GGUF"
    folder.mkdir(parents=True)
    (folder / "M-00001-of-00002.gguf").write_bytes(b"GGUF")
    assert downloaded_path(model, tmp_path) is None
    (folder / "M-00002-of-00002.gguf").write_bytes(b"GGUF")
    assert downloaded_path(model, tmp_path) == folder / "M-00001-of-00002.gguf"


def test_what_is_left_to_fetch_counts_partial_files(tmp_path: Path) -> None:
    done = RemoteFile("a.gguf", "", "1" * 64, "c", 100)
    half = RemoteFile("b.gguf", "", "2" * 64, "c", 100)
    none = RemoteFile("c.gguf", "", "3" * 64, "c", 100)
    (tmp_path / "a.gguf").write_bytes(b"x" * 100)
    partial_path(tmp_path, half).parent.mkdir(parents=True)
    partial_path(tmp_path, half).write_bytes(b"x" * 40)
    assert missing_bytes(tmp_path, (done, half, none)) == 60 + 100


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_no_space_is_refused_before_fetching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * GB, 9 * GB, GB))
    check_space(tmp_path / "org" / "repo", GB)  # exactly what is free: fits
    with pytest.raises(DownloadError, match=r"not enough disk space in .*: the download needs 2.00 GB more, 1.00 GB are free"):
        check_space(tmp_path / "org" / "repo", 2 * GB)


def test_the_cli_says_no_space_in_one_line_with_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "catalog.toml").write_text('[[model]]\nname = "Big"\nrepo = "org/Big-GGUF"\nfile = "big.gguf"\nsize = 5_000_000_000\nquant = "Q4_K_M"\n')
    monkeypatch.setattr(downloads, "remote_file", lambda repo, file: RemoteFile(file, "http://storage.invalid/big", "4" * 64, "c", 5 * GB))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * GB, 9 * GB, GB))
    monkeypatch.setattr(downloads, "fetch", lambda *args: pytest.fail("fetched with no space"))
    monkeypatch.setattr(sys, "argv", ["mesh-llm", "download", "big", "--models-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main.run()
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("mesh-llm: error: not enough disk space") and "5.00 GB more, 1.00 GB are free" in error and "\n" not in error


def test_extra_catalog_entries_add_to_the_built_in_ones(tmp_path: Path) -> None:
    extra = tmp_path / "catalog.toml"
    assert load(extra) == CATALOG  # no file: the built-in catalog
    extra.write_text('[[model]]\nname = "Mine"\nrepo = "me/Mine-GGUF"\nfile = "mine.gguf"\nsize = 1000\nquant = "Q8_0"\n')
    catalog = load(extra)
    assert catalog["Mine"].repo == "me/Mine-GGUF" and set(CATALOG) < set(catalog)


def test_download_reads_names_as_model_does() -> None:
    assert entry_named("qwen3-8b", CATALOG).name == "Qwen3-8B"
    assert entry_named("235b", CATALOG).name == "Qwen3-235B-A22B"  # a unique substring
    assert entry_named("smollm2", CATALOG).name == "SmolLM2-135M-Instruct"  # an alias
    with pytest.raises(UsageError, match="several catalog models: .*Qwen3-32B"):
        entry_named("32b", CATALOG)
    with pytest.raises(UsageError, match="not a catalog name"):
        entry_named("no-such-model", CATALOG)

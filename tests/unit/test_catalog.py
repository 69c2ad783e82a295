"""The catalog file: every entry says where its file comes from, and names resolve within it."""

from __future__ import annotations

import re

import pytest

from services.common import catalog
from services.common.catalog import CATALOG, ENTRIES, alias_of, catalog_name, parse

SEED_FAMILIES = [
    "Qwen2.5-3B-Instruct", "Qwen2.5-7B-Instruct", "Qwen2.5-14B-Instruct", "Qwen2.5-32B-Instruct", "Qwen2.5-72B-Instruct",
    "Qwen3-4B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B", "Qwen3-30B-A3B", "Qwen3-235B-A22B",
    "Llama-3.2-3B-Instruct", "Llama-3.3-70B-Instruct", "Gemma-3-4B-it", "Gemma-3-12B-it", "Gemma-3-27B-it",
    "GLM-4.7-Flash", "Mixtral-8x22B-Instruct", "gpt-oss-20b", "gpt-oss-120b", "DeepSeek-R1-Distill-Qwen-7B",
    "SmolLM2-135M-Instruct",
]  # fmt: skip


def test_the_seed_families_are_in_the_catalog() -> None:
    assert set(SEED_FAMILIES) <= set(CATALOG)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: entry.name)
def test_every_entry_says_where_its_file_is(entry: catalog.CatalogEntry) -> None:
    assert bool(entry.repo) != bool(entry.package), "a repository or a package, not both"
    assert entry.file.endswith(".gguf") and entry.size_bytes > 0 and entry.quant
    assert entry.repo == "" or re.fullmatch(r"[\w.-]+/[\w.-]+", entry.repo)
    # A split GGUF is named by its first part.
    part = re.search(r"-(\d{5})-of-(\d{5})\.gguf$", entry.file)
    assert part is None or part.group(1) == "00001"
    assert entry.draft == "" or (entry.draft in CATALOG and CATALOG[entry.draft].draft == "")


def test_names_and_aliases_are_unique_in_any_case() -> None:
    names = [entry.name.lower() for entry in ENTRIES] + [alias.lower() for entry in ENTRIES for alias in entry.aliases]
    assert len(names) == len(set(names))


def test_lookups() -> None:
    assert catalog_name("qwen3-8b") == "Qwen3-8B"
    assert catalog_name("Qwen3") is None
    assert alias_of("SmolLM2") == "SmolLM2-135M-Instruct"
    assert [entry.moe for entry in (CATALOG["Qwen3-30B-A3B"], CATALOG["Qwen3-8B"])] == [True, False]


def test_a_catalog_text_parses() -> None:
    (entry,) = parse('[[model]]\nname = "X"\nrepo = "o/r"\nfile = "x.gguf"\nsize = 1_000\nquant = "Q8_0"\nmoe = true\n')
    assert (entry.name, entry.repo, entry.size_bytes, entry.moe, entry.draft) == ("X", "o/r", 1000, True, "")

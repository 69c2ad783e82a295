"""What this node holds: the models it was asked to serve, found on disk, and every model it could
serve. Answers placement's Models call; finding and reading the files is models.py's.

Must not start processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.runner.models import ModelError, ModelRef, NotDownloaded, catalog_of, models_on_disk, resolve


@dataclass(frozen=True)
class Inventory:
    named: tuple[ModelRef, ...]  # one per spec asked for, in order (absent: a Hub model to fetch)
    on_disk: tuple[ModelRef, ...]  # every model this node could serve (the named ones too), by model id
    on_hub: tuple[ModelRef, ...] = ()  # the catalog's Hub models not on disk (absent): what a standby may fetch for demand


def take_inventory(specs: Sequence[str], models_dir: Path) -> Inventory:
    """The models `specs` name and every model on disk; ModelError for a spec that names no GGUF
    and no Hub model."""
    named = tuple(resolve_or_absent(spec, models_dir) for spec in specs)
    found = {ref.model_id: ref for ref in named if not ref.absent}
    for model_id in models_on_disk(models_dir, [ref for ref in named if not ref.absent]):
        if model_id in found:
            continue
        try:
            found[model_id] = resolve(model_id, models_dir)
        except ModelError:
            # Listed but not usable (a catalog name whose package is gone): this node cannot serve
            # or lend it, so it does not say it holds it.
            continue
    on_hub = tuple(
        ModelRef(entry.name, Path(), entry.size_bytes, absent=True) for entry in catalog_of(models_dir).values() if entry.repo and entry.name not in found
    )
    return Inventory(named, tuple(found[model_id] for model_id in sorted(found)), on_hub)


def resolve_or_absent(spec: str, models_dir: Path) -> ModelRef:
    """The model on disk `spec` names, or an absent one when it names a Hub model not downloaded yet."""
    try:
        return resolve(spec, models_dir)
    except NotDownloaded as missing:
        return ModelRef(missing.model_id, Path(), missing.size_bytes, absent=True)

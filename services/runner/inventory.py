"""What this node holds: the models it was asked to serve, found on disk, and every model it could
serve. Answers placement's Models call; finding and reading the files is models.py's.

Must not start processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.runner.models import ModelError, ModelRef, models_on_disk, resolve


@dataclass(frozen=True)
class Inventory:
    named: tuple[ModelRef, ...]  # one per spec asked for, in order
    on_disk: tuple[ModelRef, ...]  # every model this node could serve (the named ones too), by model id


def take_inventory(specs: Sequence[str], models_dir: Path) -> Inventory:
    """The models `specs` name and every model on disk; ModelError for a spec that names no GGUF."""
    named = tuple(resolve(spec, models_dir) for spec in specs)
    found = {ref.model_id: ref for ref in named}
    for model_id in models_on_disk(models_dir, list(named)):
        if model_id in found:
            continue
        try:
            found[model_id] = resolve(model_id, models_dir)
        except ModelError:
            # Listed but not usable (a catalog name whose package is gone): this node cannot serve
            # or lend it, so it does not say it holds it.
            continue
    return Inventory(named, tuple(found[model_id] for model_id in sorted(found)))

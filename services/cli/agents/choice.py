"""Which served model an agent gets: the one --model names, else the largest the mesh serves.

Pure: reads the gateway's GET /v1/models answer (every model served in the mesh, with its nodes'
states) and the console's /api/status (the sizes of the files this node and its peers serve).
Must not fetch anything itself (launcher.py does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class NoModel(ValueError):
    """No served model fits what was asked; the message lists what is served."""


@dataclass(frozen=True)
class Served:
    model_id: str
    size_bytes: int  # of its file, 0 when no status told it
    ready: bool  # some node answers for it now


def served_models(listing: dict, status: dict | None) -> list[Served]:
    """The models of /v1/models, with the largest size any node's status gives each."""
    sizes: dict[str, int] = {}
    if status:
        for node in (status, *status.get("peers", [])):
            for model in node.get("models", []):
                sizes[model["model_id"]] = max(sizes.get(model["model_id"], 0), int(model.get("size_bytes") or 0))
    return [
        Served(entry["id"], sizes.get(entry["id"], 0), any(node.get("state") == "ready" for node in entry.get("nodes", [])))
        for entry in listing.get("data", [])
    ]


def choose(wanted: str, served: Sequence[Served]) -> str:
    """The model named (exactly, else the one whose name holds it in any case), or with none named the
    largest ready one (the largest of all while none is ready yet); ties go to the first name."""
    if not served:
        raise NoModel("the mesh serves no model yet: start a node with --model, or wait for one to load")
    names = sorted(model.model_id for model in served)
    if wanted:
        if wanted in names:
            return wanted
        matches = [name for name in names if wanted.lower() in name.lower()]
        if len(matches) == 1:
            return matches[0]
        kind = f"'{wanted}' names {len(matches)} of them" if matches else f"'{wanted}' is not served"
        raise NoModel(f"--model {kind}; the mesh serves: {', '.join(names)}")
    pool = [model for model in served if model.ready] or list(served)
    return min(pool, key=lambda model: (-model.size_bytes, model.model_id)).model_id

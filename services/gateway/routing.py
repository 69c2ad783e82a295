"""Choosing where a request goes: a pure function of the mesh view, the model name and now.

Owns the decision only; relaying is openai/relay.py's job. No I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.records import MeshView, ServedModel


@dataclass(frozen=True)
class Target:
    model_id: str
    node_id: str
    port: int


@dataclass(frozen=True)
class UnknownModel:
    served: tuple[str, ...]


@dataclass(frozen=True)
class NotReady:
    model_id: str
    state: str
    retry_after: int


def served_models(view: MeshView) -> tuple[str, ...]:
    """Every model id served (in any state) on this node, sorted, once."""
    return tuple(sorted({served.model_id for served in view.own.served}))


def route(view: MeshView, requested: str, now: float) -> Target | UnknownModel | NotReady:
    """A ready local server for the model (names match case-insensitively)."""
    matches = [served for served in view.own.served if served.model_id.lower() == requested.lower()]
    if not matches:
        return UnknownModel(served_models(view))
    ready = [served for served in matches if served.state == "ready"]
    if ready:
        return Target(ready[0].model_id, view.own.node_id, ready[0].port)
    return NotReady(matches[0].model_id, matches[0].state, retry_after(matches, now))


def retry_after(matches: list[ServedModel], now: float) -> int:
    """Whole seconds until the soonest restart is due (at least 1)."""
    due = [served.retry_at - now for served in matches if served.retry_at > now]
    return max(1, math.ceil(min(due))) if due else 1

"""Deciding what this node serves: a pure function from models and memory to assignments.

Owns the solo/unserved decision (splits arrive with the pipeline issue). No I/O, no grpc.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.common.records import Assignment

GIB = 1024**3


@dataclass(frozen=True)
class ModelNeed:
    model_id: str
    size_bytes: int


def memory_needed(size_bytes: int, headroom: float, context_bytes: int) -> int:
    """Bytes a model needs to run: its weights with headroom, plus its context."""
    return int(size_bytes * (1 + headroom)) + context_bytes


def plan(models: Sequence[ModelNeed], memory_offered: int, headroom: float, context_bytes: int,
         dropped: frozenset[str] = frozenset()) -> tuple[Assignment, ...]:
    """Serve each model solo, in the order asked, while it fits what is left of the memory."""
    left = memory_offered
    assignments = []
    for model in models:
        if model.model_id in dropped:
            assignments.append(Assignment(model.model_id, "dropped", "dropped by mesh-llm drop"))
            continue
        need = memory_needed(model.size_bytes, headroom, context_bytes)
        if need <= left:
            left -= need
            assignments.append(Assignment(model.model_id, "solo", f"fits: needs {need / GIB:.2f} GiB of {memory_offered / GIB:.2f} GiB offered"))
        else:
            assignments.append(Assignment(model.model_id, "unserved", f"too big: needs {need / GIB:.2f} GiB, {left / GIB:.2f} GiB left of {memory_offered / GIB:.2f} GiB offered"))
    return tuple(assignments)


def role_of(assignments: Sequence[Assignment]) -> str:
    return "serving" if any(a.mode == "solo" for a in assignments) else "standby"

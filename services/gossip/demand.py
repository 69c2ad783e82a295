"""The demand map: how much each model is asked for, counted by every gateway, merged mesh-wide.

Each gateway (the origin) writes only its own entry per model; a newer entry of an origin replaces
the older one everywhere (merge by max of a total order), so any order of delivery gives the same
map. Entries are forgotten once their last request is older than the TTL. Pure functions plus the
origin's own counter; clocks come in as arguments.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.common.records import ModelDemand

HOUR = 3600.0
MAX_MODELS = 256  # distinct models one origin counts at most (a client cannot bloat every node's state)
MAX_NAME = 200


@dataclass(frozen=True)
class DemandEntry:
    model_id: str
    origin: str  # node id of the gateway that counted
    requests: int  # since the origin started counting
    recent: int  # in the hour before updated_at
    last_seen: float  # unix time of the origin's last request for the model
    updated_at: float  # unix time the origin wrote the entry


Key = tuple[str, str]  # (model id, origin)


def _order(entry: DemandEntry) -> tuple[float, int, float, int]:
    return entry.updated_at, entry.requests, entry.last_seen, entry.recent


def merge(local: Mapping[Key, DemandEntry], remote: Iterable[DemandEntry]) -> dict[Key, DemandEntry]:
    merged = dict(local)
    for entry in remote:
        key = (entry.model_id, entry.origin)
        current = merged.get(key)
        if current is None or _order(entry) > _order(current):
            merged[key] = entry
    return merged


def expire(entries: Mapping[Key, DemandEntry], now: float, ttl: float) -> dict[Key, DemandEntry]:
    """Entries whose last request is within the TTL."""
    return {key: entry for key, entry in entries.items() if now - entry.last_seen <= ttl}


def summarize(entries: Iterable[DemandEntry], pinned: Iterable[str], now: float) -> tuple[ModelDemand, ...]:
    """Per model: the sum of every origin's counts (an origin's hour counts only while it is
    fresh), the latest request, and whether a live node pins it; sorted by model id."""
    totals: dict[str, ModelDemand] = {}
    for entry in entries:
        seen = totals.get(entry.model_id, ModelDemand(entry.model_id))
        recent = entry.recent if now - entry.updated_at < HOUR else 0
        totals[entry.model_id] = ModelDemand(entry.model_id, seen.requests + entry.requests, seen.recent + recent, max(seen.last_seen, entry.last_seen))
    for model_id in pinned:
        seen = totals.get(model_id, ModelDemand(model_id))
        totals[model_id] = ModelDemand(model_id, seen.requests, seen.recent, seen.last_seen, pinned=True)
    return tuple(totals[name] for name in sorted(totals))


class OwnCounter:
    """This node's counts, written into its own demand entries."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.requests: dict[str, int] = {}
        self.times: dict[str, deque[float]] = {}
        self.last_seen: dict[str, float] = {}

    def count(self, model_id: str, n: int, now: float) -> bool:
        """Count n requests for a model; False (and nothing counted) for names we refuse to track."""
        if not model_id or len(model_id) > MAX_NAME or (model_id not in self.requests and len(self.requests) >= MAX_MODELS):
            return False
        self.requests[model_id] = self.requests.get(model_id, 0) + n
        self.times.setdefault(model_id, deque()).extend([now] * n)
        self.last_seen[model_id] = now
        return True

    def entries(self, now: float) -> list[DemandEntry]:
        for times in self.times.values():
            while times and now - times[0] > HOUR:
                times.popleft()
        return [
            DemandEntry(model_id, self.origin, total, len(self.times[model_id]), self.last_seen[model_id], now) for model_id, total in self.requests.items()
        ]

    def forget(self, now: float, ttl: float) -> None:
        """Drop models whose last request is older than the TTL (they leave every node's map)."""
        for model_id in [m for m, seen in self.last_seen.items() if now - seen > ttl]:
            del self.requests[model_id], self.times[model_id], self.last_seen[model_id]

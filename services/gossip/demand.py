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
    """This node's counts, written into its own demand entries: what this gossip counted since it
    started, plus what its previous life (the same node, before gossip restarted) had counted, as
    the mesh remembers it."""

    def __init__(self, origin: str, started: float = 0.0) -> None:
        self.origin = origin
        self.started = started  # unix time this counter began: our entries written before are a previous life's
        self.requests: dict[str, int] = {}
        self.times: dict[str, deque[float]] = {}
        self.last_seen: dict[str, float] = {}
        self.previous: dict[str, DemandEntry] = {}  # per model, the newest entry of our previous life heard

    def refuses(self, model_id: str) -> bool:
        """Names we do not track: empty, too long, or new beyond MAX_MODELS."""
        known = model_id in self.requests or model_id in self.previous
        return not model_id or len(model_id) > MAX_NAME or (not known and len(self.requests.keys() | self.previous.keys()) >= MAX_MODELS)

    def count(self, model_id: str, n: int, now: float) -> bool:
        """Count n requests for a model; False (and nothing counted) for names we refuse to track."""
        if self.refuses(model_id):
            return False
        self.requests[model_id] = self.requests.get(model_id, 0) + n
        self.times.setdefault(model_id, deque()).extend([now] * n)
        self.last_seen[model_id] = now
        return True

    def take_back(self, entry: DemandEntry) -> bool:
        """Keep an entry of our previous life that a peer echoed (the newest per model): its counts
        add to ours. True if it told us something new."""
        kept = self.previous.get(entry.model_id)
        if entry.origin != self.origin or entry.updated_at >= self.started or self.refuses(entry.model_id):
            return False
        if kept is not None and _order(kept) >= _order(entry):
            return False
        self.previous[entry.model_id] = entry
        return True

    def entries(self, now: float) -> list[DemandEntry]:
        for times in self.times.values():
            while times and now - times[0] > HOUR:
                times.popleft()
        return [self._entry(model_id, now) for model_id in self.requests.keys() | self.previous.keys()]

    def _entry(self, model_id: str, now: float) -> DemandEntry:
        before = self.previous.get(model_id, DemandEntry(model_id, self.origin, 0, 0, 0.0, now))
        # The previous life's hour count holds for the hour after it was written (as summarize reads it).
        recent = before.recent if now - before.updated_at < HOUR else 0
        return DemandEntry(
            model_id,
            self.origin,
            self.requests.get(model_id, 0) + before.requests,
            len(self.times.get(model_id, ())) + recent,
            self._last_seen(model_id),
            now,
        )

    def forget(self, now: float, ttl: float) -> None:
        """Drop models whose last request, in either life, is older than the TTL (they leave every node's map)."""
        for model_id in [m for m in self.requests.keys() | self.previous.keys() if now - self._last_seen(m) > ttl]:
            for counts in (self.requests, self.times, self.last_seen, self.previous):
                counts.pop(model_id, None)

    def _last_seen(self, model_id: str) -> float:
        before = self.previous.get(model_id)
        return max(self.last_seen.get(model_id, 0.0), before.last_seen if before is not None else 0.0)

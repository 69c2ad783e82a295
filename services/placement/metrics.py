"""Placement's Prometheus metrics: plan changes and the reasons of the current plan."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.records import Assignment


class _PlanCollector(Collector):
    def __init__(self, current: Callable[[], tuple[Assignment, ...]]) -> None:
        self.current = current

    def collect(self) -> Iterator[GaugeMetricFamily]:
        plan = GaugeMetricFamily(
            "mesh_placement_assignment", "This node's current decision per model (1), with its reason", labels=["model", "mode", "promoted", "reason"]
        )
        for a in self.current():
            plan.add_metric([a.model_id, a.mode, str(a.promoted).lower(), a.reason], 1)
        yield plan


class PlacementMetrics:
    def __init__(self, current: Callable[[], tuple[Assignment, ...]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.plan_changes = Counter("mesh_placement_plan_changes", "Decisions that changed, by model and new mode", ["model", "mode"], registry=r)
        self.promotions = Counter("mesh_placement_promotions", "Models this node started serving for the mesh's demand", ["model"], registry=r)
        r.register(_PlanCollector(current))

    def changed(self, before: tuple[Assignment, ...], after: tuple[Assignment, ...]) -> None:
        old = {a.model_id: a for a in before}
        for a in after:
            if old.get(a.model_id) != a:
                self.plan_changes.labels(a.model_id, a.mode).inc()

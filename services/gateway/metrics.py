"""The gateway's Prometheus metrics, in a registry of its own (no module-level singletons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mesh_gateway_requests", "API requests by model, endpoint and status", ["model", "endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("mesh_gateway_prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        self.completion_tokens = Counter("mesh_gateway_completion_tokens", "Completion tokens generated", ["model"], registry=r)
        self.time_to_first_token = Histogram("mesh_gateway_time_to_first_token_seconds", "Seconds from request to first response byte", ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.request_duration = Histogram("mesh_gateway_request_duration_seconds", "Seconds from request to last response byte", ["model"], buckets=LATENCY_BUCKETS, registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

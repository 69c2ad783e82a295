"""Each service's /metrics: a Prometheus registry of its own, served on a loopback port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server


def serve(port: int, registry: CollectorRegistry) -> None:
    """Serve `registry` at http://127.0.0.1:port/metrics from a background thread."""
    # Security invariant: like gRPC, metrics are only reachable on this machine.
    start_http_server(port, addr="127.0.0.1", registry=registry)

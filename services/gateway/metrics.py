"""The gateway's Prometheus metrics, in a registry of its own (no module-level singletons)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.records import PeerStatus
from services.gateway.mirror import MeshMirror

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _MeshCollector(Collector):
    """Peers by state and gossip rounds, read from the mesh view at scrape time."""

    def __init__(self, mirror: MeshMirror) -> None:
        self.mirror = mirror

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        view = self.mirror.view
        peers = GaugeMetricFamily("mesh_gossip_peers", "Peers this node knows, by state", labels=["state"])
        for state in (PeerStatus.ALIVE, PeerStatus.SUSPECT):
            peers.add_metric([state], sum(1 for p in view.peers if p.status == state))
        yield peers
        yield CounterMetricFamily("mesh_gossip_rounds", "Gossip state exchanges this node took part in", value=view.gossip_rounds)


class GatewayMetrics:
    def __init__(self, mirror: MeshMirror | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mesh_gateway_requests", "API requests by model, target node, endpoint and status", ["model", "target", "endpoint", "status"], registry=r
        )
        self.errors = Counter(
            "mesh_gateway_target_errors", "Targets that failed a request, by model, target node and reason", ["model", "target", "reason"], registry=r
        )
        self.prompt_tokens = Counter("mesh_gateway_prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        self.completion_tokens = Counter("mesh_gateway_completion_tokens", "Completion tokens generated", ["model"], registry=r)
        self.time_to_first_token = Histogram(
            "mesh_gateway_time_to_first_token_seconds", "Seconds from request to first response byte", ["model", "target"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.inter_token = Histogram(
            "mesh_gateway_inter_token_seconds",
            "Seconds between streamed chunks",
            ["model"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64),
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "mesh_gateway_tokens_per_second",
            "Completion tokens per second of each request (first byte to last)",
            ["model"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.takeovers = Counter(
            "mesh_gateway_takeovers",
            "Answers whose server failed mid-answer, by model and outcome (resumed: a stream went on on another server; "
            "retried: a whole answer was asked of another; failed: the client got an error)",
            ["model", "outcome"],
            registry=r,
        )
        self.takeover_seconds = Histogram(
            "mesh_gateway_takeover_seconds",
            "Seconds a taken-over stream went without text: from the failed server's last chunk to the next server's first",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_duration = Histogram(
            "mesh_gateway_request_duration_seconds", "Seconds from request to last response byte", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )

        self.peer_bytes = Counter("mesh_peer_bytes", "Bytes over QUIC streams to and from peers", ["stream", "direction"], registry=r)
        self.rpc_bytes = Counter("mesh_rpc_tunnel_bytes", "Bytes through RPC tunnels to split workers, by worker address", ["worker", "direction"], registry=r)
        # One chunk = one read from llama-server (or the worker's rpc-server), relayed as one QUIC stream write.
        self.rpc_chunks = Counter("mesh_rpc_tunnel_chunks", "Reads relayed through RPC tunnels, by worker address", ["worker", "direction"], registry=r)
        if mirror is not None:
            r.register(_MeshCollector(mirror))

    def count_peer_bytes(self, stream: str, direction: str, size: int) -> None:
        self.peer_bytes.labels(stream, direction).inc(size)

    def count_rpc_bytes(self, worker: str, direction: str, size: int) -> None:
        self.rpc_bytes.labels(worker, direction).inc(size)
        self.rpc_chunks.labels(worker, direction).inc()
        self.peer_bytes.labels("rpc", direction).inc(size)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

"""The runner's Prometheus metrics, read from its servers at scrape time: restarts, load time,
model bytes on disk, children by state, and bytes primed into rpc-server caches."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.records import ProcessKind
from services.runner.servers import LlamaServers


class _ServersCollector(Collector):
    def __init__(self, servers: LlamaServers) -> None:
        self.servers = servers

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        restarts = CounterMetricFamily("mesh_runner_restarts", "Restarts of llama-server/rpc-server after a crash", labels=["model", "kind"])
        load = GaugeMetricFamily("mesh_runner_load_seconds", "Seconds from the last start to ready", labels=["model", "kind"])
        size = GaugeMetricFamily("mesh_runner_model_bytes", "Size on disk of each model served", labels=["model"])
        children = GaugeMetricFamily("mesh_runner_children", "Supervised processes by kind and state", labels=["kind", "state"])
        counts: dict[tuple[str, str], int] = {}
        for served in self.servers.states():
            restarts.add_metric([served.model_id, served.kind], served.restarts)
            load.add_metric([served.model_id, served.kind], self.servers.load_seconds(served.model_id, served.kind))
            if served.kind == ProcessKind.LLAMA_SERVER:
                size.add_metric([served.model_id], served.size_bytes)
            counts[(served.kind, served.state)] = counts.get((served.kind, served.state), 0) + 1
        for (kind, state), count in sorted(counts.items()):
            children.add_metric([kind, state], count)
        yield from (restarts, load, size, children)
        yield CounterMetricFamily(
            "mesh_runner_rpc_primed_bytes",
            "Bytes hashed from local GGUFs into rpc-server tensor caches (weights the split's host then sends as hashes)",
            value=self.servers.primed_bytes,
        )


def registry_for(servers: LlamaServers) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_ServersCollector(servers))
    return registry

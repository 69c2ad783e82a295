"""Gossip's Prometheus metrics: peers by state, rounds, message bytes, suspicions, the demand map,
the blackboard's posts and the peers' posts it dropped.

Owns the counters the gossip loop adds to (GossipMetrics) and the registry a scrape reads
(registry_for), which also reads the membership and the loop's round count at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.gossip import swim
from services.gossip.membership import Membership


class GossipMetrics:
    """Counters the gossip loop adds to as it works (registered by registry_for)."""

    def __init__(self) -> None:
        self.message_bytes = Counter("mesh_gossip_message_bytes", "Bytes of gossip messages, by direction", ["direction"], registry=None)
        self.suspicions = Counter("mesh_gossip_suspicions", "Members this node suspected after failed probes", registry=None)
        self.deaths = Counter("mesh_gossip_deaths", "Members this node declared dead", registry=None)
        self.board_posts = Gauge("mesh_gossip_board_posts", "Posts this node's blackboard holds", registry=None)
        self.board_dropped = Counter("mesh_gossip_board_dropped", "Blackboard posts from peers dropped on receipt, by reason", ["reason"], registry=None)


class _StateCollector(Collector):
    """Read from the membership and the gossip loop at scrape time."""

    def __init__(self, membership: Membership, rounds: Callable[[], int]) -> None:
        self.membership = membership
        self.rounds = rounds

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        peers = GaugeMetricFamily("mesh_gossip_peers", "Members this node knows, by state", labels=["state"])
        members = self.membership.members.values()
        for state in (swim.ALIVE, swim.SUSPECT, swim.DEAD, swim.LEFT):
            peers.add_metric([state], sum(1 for m in members if m.status == state))
        yield peers
        yield CounterMetricFamily("mesh_gossip_rounds", "Gossip state exchanges this node took part in", value=self.rounds())
        requests = GaugeMetricFamily("mesh_gossip_demand_requests", "Requests per model in the mesh's demand map", labels=["model"])
        recent = GaugeMetricFamily("mesh_gossip_demand_recent_requests", "Requests per model in the last hour", labels=["model"])
        for demand in self.membership.demand_map():
            requests.add_metric([demand.model_id], demand.requests)
            recent.add_metric([demand.model_id], demand.recent)
        yield requests
        yield recent


def registry_for(metrics: GossipMetrics, membership: Membership, rounds: Callable[[], int]) -> CollectorRegistry:
    """Everything a scrape of gossip reads: the loop's counters, then the state read at scrape time
    (`rounds`: the loop's count of state exchanges)."""
    registry = CollectorRegistry()
    for collector in (
        metrics.message_bytes,
        metrics.suspicions,
        metrics.deaths,
        metrics.board_posts,
        metrics.board_dropped,
        _StateCollector(membership, rounds),
    ):
        registry.register(collector)
    return registry

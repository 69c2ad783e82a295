"""Gossip's Prometheus metrics: peers by state, rounds, message bytes, suspicions, the demand map."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.gossip import swim
from services.gossip.membership import Membership


class _StateCollector(Collector):
    """Read from the membership at scrape time."""

    def __init__(self, membership: Membership, rounds: object) -> None:
        self.membership = membership
        self.rounds = rounds  # the protocol (its `rounds` attribute), set once it exists

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        peers = GaugeMetricFamily("mesh_gossip_peers", "Members this node knows, by state", labels=["state"])
        members = self.membership.members.values()
        for state in (swim.ALIVE, swim.SUSPECT, swim.DEAD, swim.LEFT):
            peers.add_metric([state], sum(1 for m in members if m.status == state))
        yield peers
        yield CounterMetricFamily("mesh_gossip_rounds", "Gossip state exchanges this node took part in", value=getattr(self.rounds, "rounds", 0))
        requests = GaugeMetricFamily("mesh_gossip_demand_requests", "Requests per model in the mesh's demand map", labels=["model"])
        recent = GaugeMetricFamily("mesh_gossip_demand_recent_requests", "Requests per model in the last hour", labels=["model"])
        for demand in self.membership.demand_map():
            requests.add_metric([demand.model_id], demand.requests)
            recent.add_metric([demand.model_id], demand.recent)
        yield requests
        yield recent


class GossipMetrics:
    def __init__(self, membership: Membership) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.message_bytes = Counter("mesh_gossip_message_bytes", "Bytes of gossip messages, by direction", ["direction"], registry=r)
        self.suspicions = Counter("mesh_gossip_suspicions", "Members this node suspected after failed probes", registry=r)
        self.deaths = Counter("mesh_gossip_deaths", "Members this node declared dead", registry=r)
        self.state = _StateCollector(membership, None)
        r.register(self.state)

"""Gossip's scrape: the loop's counters and the rounds it has taken, read when scraped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.gossip.metrics import GossipMetrics, registry_for


class NoMembers:
    members: dict[str, object] = {}

    def demand_map(self) -> list[object]:
        return []


def scrape(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_scrape_reads_the_rounds_and_counters_as_they_are_then() -> None:
    metrics, rounds = GossipMetrics(), [3]
    registry = registry_for(metrics, NoMembers(), lambda: rounds[0])
    metrics.suspicions.inc()
    metrics.message_bytes.labels("sent").inc(120)
    rounds[0] = 5
    assert scrape(registry, "mesh_gossip_rounds_total") == 5
    assert scrape(registry, "mesh_gossip_suspicions_total") == 1
    assert scrape(registry, "mesh_gossip_message_bytes_total", direction="sent") == 120
    assert scrape(registry, "mesh_gossip_peers", state="alive") == 0


def test_two_gossip_services_in_one_process_count_apart() -> None:
    """Counters belong to their registry (tests run several nodes' services in one process)."""
    first, second = GossipMetrics(), GossipMetrics()
    first_registry, second_registry = (registry_for(m, NoMembers(), lambda: 0) for m in (first, second))
    first.deaths.inc()
    assert scrape(first_registry, "mesh_gossip_deaths_total") == 1
    assert scrape(second_registry, "mesh_gossip_deaths_total") == 0

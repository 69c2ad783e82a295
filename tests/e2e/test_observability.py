"""Prometheus metrics on all four services, a real Prometheus scraping them, the Grafana dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SMOLLM2
from tests.nodes import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
FAMILIES = {
    "gateway": {
        "mesh_gateway_requests",
        "mesh_gateway_time_to_first_token_seconds",
        "mesh_gateway_inter_token_seconds",
        "mesh_gateway_tokens_per_second",
        "mesh_gateway_completion_tokens",
        "mesh_peer_bytes",
    },
    "gossip": {"mesh_gossip_peers", "mesh_gossip_rounds", "mesh_gossip_message_bytes", "mesh_gossip_suspicions", "mesh_gossip_demand_requests"},
    "placement": {"mesh_placement_plan_changes", "mesh_placement_assignment"},
    "runner": {"mesh_runner_restarts", "mesh_runner_load_seconds", "mesh_runner_model_bytes", "mesh_runner_rpc_primed_bytes"},
}


def scrape(url: str) -> dict[str, list]:
    """{family name: samples} of one /metrics page, parsed by prometheus_client's own parser."""
    return {family.name: family.samples for family in text_string_to_metric_families(httpx.get(url, timeout=10).text)}


def total(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_every_service_has_its_metrics_counting_requests_and_the_dashboard_queries_exist(start_node) -> None:
    node = start_node("--model", SMOLLM2)
    node.wait_ready(SMOLLM2)
    for i in range(5):
        response = httpx.post(
            f"{node.api}/v1/chat/completions",
            timeout=60,
            json={"model": SMOLLM2, "stream": i % 2 == 0, "max_tokens": 8, "messages": [{"role": "user", "content": f"Count to {i}."}]},
        )
        assert response.status_code == 200
    urls = node.status()["metrics"]
    assert set(urls) == set(FAMILIES) and all(url.startswith("http://127.0.0.1:") for url in urls.values())
    deadline = time.monotonic() + 10
    while True:  # demand reaches gossip in batches (twice a second)
        pages = {service: scrape(url) for service, url in urls.items()}
        if total(pages["gossip"]["mesh_gossip_demand_requests"], "mesh_gossip_demand_requests", model=SMOLLM2) == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for service, families in FAMILIES.items():
        assert families <= set(pages[service]), f"{service} lacks {families - set(pages[service])}"
    gateway = pages["gateway"]
    assert total(gateway["mesh_gateway_requests"], "mesh_gateway_requests_total", model=SMOLLM2, status="200") == 5
    assert total(gateway["mesh_gateway_time_to_first_token_seconds"], "mesh_gateway_time_to_first_token_seconds_count", model=SMOLLM2) == 5
    assert total(pages["gossip"]["mesh_gossip_demand_requests"], "mesh_gossip_demand_requests", model=SMOLLM2) == 5
    assert total(pages["placement"]["mesh_placement_assignment"], "mesh_placement_assignment", model=SMOLLM2, mode="solo") == 1
    runner = pages["runner"]
    assert total(runner["mesh_runner_model_bytes"], "mesh_runner_model_bytes", model=SMOLLM2) > 50e6
    assert total(runner["mesh_runner_load_seconds"], "mesh_runner_load_seconds", model=SMOLLM2) > 0
    assert total(runner["mesh_runner_restarts"], "mesh_runner_restarts_total", model=SMOLLM2) == 0

    families = {name for page in pages.values() for name in page}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "mesh-llm.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {name for query in queries for name in re.findall(r"\b(mesh_[a-z0-9_]+)", query)}
    assert len(queries) >= 15 and named
    # Every metric a query names belongs to a family the node exposes (a labelled counter that was
    # never incremented has no samples yet, but its family is declared).
    unknown = {name for name in named if re.sub(r"_(total|bucket|sum|count)$", "", name) not in families}
    assert not unknown, f"dashboard names unknown metrics: {sorted(unknown)}"


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is installed by `make test`")
def test_a_real_prometheus_scrapes_the_four_services_with_the_shipped_config(tmp_path: Path, llama_bin_dir: Path) -> None:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "MESH_NODE_HOME": str(tmp_path / "home")}
    honcho = subprocess.Popen(
        [str(Path(sys.executable).parent / "honcho"), "start"],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "honcho.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    web = free_port()
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={ROOT / 'deploy' / 'prometheus' / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        stdout=(tmp_path / "prometheus.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        health: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                targets = httpx.get(f"http://127.0.0.1:{web}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
                health = {t["labels"]["service"]: t["health"] for t in targets}
            except (httpx.HTTPError, ValueError, KeyError):
                health = {}
            if health and set(health.values()) == {"up"} and len(health) == 4:
                break
            time.sleep(1)
        print(f"prometheus targets: {health}")
        assert health == {"gateway": "up", "gossip": "up", "placement": "up", "runner": "up"}, (tmp_path / "honcho.log").read_text()[-3000:]
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        os.killpg(honcho.pid, signal.SIGINT)
        honcho.wait(30)

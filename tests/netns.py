"""Network namespaces of the test's own: one with a non-loopback address, for tests of what a node
exposes beyond loopback (no packet leaves this machine: the veth's other end is down); or two
joined by a veth pair, a LAN of two machines (multicast included: mDNS crosses it).

Needs root and iproute2 (CI has both; under CI=true a missing tool fails the test, tests/ci_skips.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PROBE = """
import json, sys, httpx
url, headers = sys.argv[1], json.loads(sys.argv[2])
try:
    response = httpx.request(sys.argv[3], url, headers=headers, timeout=10, json=json.loads(sys.argv[4]) if sys.argv[4] else None)
    print(json.dumps({"status": response.status_code, "body": response.text}))
except httpx.ConnectError as refused:
    print(json.dumps({"status": 0, "body": str(refused)}))
"""


class Namespace:
    def __init__(self, name: str, address: str, interface: str = "") -> None:
        self.name = name
        self.address = address  # the non-loopback address inside the namespace
        self.interface = interface  # the veth end that holds it

    def argv(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def request(self, url: str, method: str = "GET", headers: dict[str, str] | None = None, body: dict | None = None) -> tuple[int, str]:
        """(status, body) of an HTTP request made from inside the namespace; status 0 when refused."""
        import json

        done = subprocess.run(
            self.argv(sys.executable, "-c", PROBE, url, json.dumps(headers or {}), method, json.dumps(body) if body else ""),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        answer = json.loads(done.stdout)
        return answer["status"], answer["body"]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _need_root_and_ip() -> None:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to make a network namespace")


@contextmanager
def namespace(address: str = "10.213.7.1") -> Iterator[Namespace]:
    _need_root_and_ip()
    name = f"mesh-test-{uuid.uuid4().hex[:8]}"
    outside, inside = f"mo{name[-8:]}", f"mi{name[-8:]}"
    _ip("netns", "add", name)
    try:
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", name)
        _ip("netns", "exec", name, "ip", "addr", "add", f"{address}/24", "dev", inside)
        _ip("netns", "exec", name, "ip", "link", "set", inside, "up")
        yield Namespace(name, address)
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@contextmanager
def linked_namespaces(subnet: str = "10.219.0") -> Iterator[tuple[Namespace, Namespace]]:
    """Two namespaces joined by a veth pair, at <subnet>.1 and <subnet>.2 (/24): two machines on one LAN."""
    _need_root_and_ip()
    tag = uuid.uuid4().hex[:8]
    ends = [Namespace(f"mesh-test-{tag}-{side}", f"{subnet}.{side}", f"mv{tag}{side}") for side in (1, 2)]
    try:
        for end in ends:
            _ip("netns", "add", end.name)
            _ip("netns", "exec", end.name, "ip", "link", "set", "lo", "up")
        one, two = ends
        _ip("link", "add", one.interface, "netns", one.name, "type", "veth", "peer", "name", two.interface, "netns", two.name)
        for end in ends:
            _ip("netns", "exec", end.name, "ip", "addr", "add", f"{end.address}/24", "dev", end.interface)
            _ip("netns", "exec", end.name, "ip", "link", "set", end.interface, "up")
        yield one, two
    finally:
        # Deleting a namespace deletes its veth end, and the pair with it.
        for end in ends:
            subprocess.run(["ip", "netns", "del", end.name], capture_output=True)

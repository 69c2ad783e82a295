from types import SimpleNamespace

import pytest

from services.gateway.peers import datagrams


@pytest.fixture
def interfaces(monkeypatch):
    """lo (64 KiB), eth0 (1500, 192.168.1.5), wg0 (1420, 10.8.0.2), eth1 down (9000)."""
    stats = {"lo": (65536, True), "eth0": (1500, True), "wg0": (1420, True), "eth1": (9000, False)}
    addrs = {"lo": ["127.0.0.1", "::1"], "eth0": ["192.168.1.5", "fe80::1%eth0"], "wg0": ["10.8.0.2"], "eth1": ["172.16.0.9"]}
    monkeypatch.setattr(datagrams.psutil, "net_if_stats", lambda: {n: SimpleNamespace(mtu=m, isup=up) for n, (m, up) in stats.items()})
    monkeypatch.setattr(datagrams.psutil, "net_if_addrs", lambda: {n: [SimpleNamespace(address=a) for a in v] for n, v in addrs.items()})


def test_loopback_endpoint_uses_large_datagrams_capped_at_what_aioquic_handles(interfaces) -> None:
    assert datagrams.datagram_size("127.0.0.3") == datagrams.LARGEST


def test_an_address_uses_its_interface_mtu_less_headers(interfaces) -> None:
    assert datagrams.datagram_size("192.168.1.5") == 1500 - 48


def test_all_interfaces_take_the_smallest_mtu_of_those_up(interfaces) -> None:
    assert datagrams.datagram_size("0.0.0.0") == 1420 - 48  # wg0; eth1 is down, lo carries no peer


def test_unknown_address_falls_back_to_quic_minimum(interfaces) -> None:
    assert datagrams.datagram_size("10.99.0.1") == datagrams.SMALLEST
    assert datagrams.datagram_size("not-an-ip") == datagrams.SMALLEST

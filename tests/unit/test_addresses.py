"""Which addresses a node's invite token carries (addresses.advertised), and how they read back."""

from __future__ import annotations

import pytest

from services.common import addresses
from services.common.addresses import InterfaceAddress as At
from services.common.invite import InviteToken, TokenError, decode, new_secret

LAPTOP = [At("lo", "127.0.0.1"), At("lo", "::1"), At("wlan0", "192.168.1.20"), At("wlan0", "2001:db8::20"), At("wlan0", "fe80::1234%wlan0")]
SERVER = [
    At("lo", "127.0.0.1"),
    At("docker0", "172.17.0.1"),
    At("eth0", "10.0.0.5"),
    At("eth1", "10.1.0.5"),
    At("tailscale0", "100.64.0.7"),
    At("eth0", "fd00::5"),
    At("virbr0", "192.168.122.1"),
]


@pytest.mark.parametrize(
    ("interfaces", "bound", "expected"),
    [
        # Bound to all IPv4 addresses (the default): every non-loopback IPv4 one; an IPv4 socket cannot answer IPv6.
        (LAPTOP, "0.0.0.0", ("192.168.1.20:7000",)),
        (LAPTOP, "", ("192.168.1.20:7000",)),
        # Bound to all addresses of both families: IPv6 too, in brackets; link-local IPv6 left out (its scope is ours).
        (LAPTOP, "::", ("192.168.1.20:7000", "[2001:db8::20]:7000")),
        # Host interfaces first (gossip tells peers the first), guest bridges after; the interfaces' order otherwise.
        (SERVER, "0.0.0.0", ("10.0.0.5:7000", "10.1.0.5:7000", "100.64.0.7:7000", "172.17.0.1:7000", "192.168.122.1:7000")),
        # Bound to one address: that one only, loopback included (test meshes bind 127.0.0.x).
        (SERVER, "127.0.0.3", ("127.0.0.3:7000",)),
        (SERVER, "10.1.0.5", ("10.1.0.5:7000",)),
        (SERVER, "fd00::5", ("[fd00::5]:7000",)),
        (SERVER, "node.lan", ("node.lan:7000",)),
        # IPv4 link-local (no DHCP answered) works on its link without a scope: kept, last.
        ([At("eth0", "169.254.7.7"), At("eth1", "10.0.0.5")], "0.0.0.0", ("10.0.0.5:7000", "169.254.7.7:7000")),
        # The same address on two interfaces (a bond) once.
        ([At("eth0", "10.0.0.5"), At("bond0", "10.0.0.5")], "0.0.0.0", ("10.0.0.5:7000",)),
        # No network at all: loopback, so that a node on this machine can still join.
        ([At("lo", "127.0.0.1"), At("lo", "::1")], "0.0.0.0", ("127.0.0.1:7000",)),
        ([At("lo", "127.0.0.1"), At("lo", "::1")], "::", ("[::1]:7000",)),
    ],
)
def test_token_carries_every_reachable_address_and_loopback_only_when_bound_to_it(interfaces, bound: str, expected: tuple[str, ...]) -> None:
    assert addresses.advertised(interfaces, bound, 7000) == expected


def test_a_machine_with_a_network_never_advertises_loopback_when_bound_to_all() -> None:
    for interfaces in (LAPTOP, SERVER):
        for bound in ("0.0.0.0", "::"):
            hosts = [addresses.split(a)[0] for a in addresses.advertised(interfaces, bound, 7000)]
            assert hosts and not any(h.startswith("127.") or h == "::1" for h in hosts)


@pytest.mark.parametrize(
    ("text", "split"),
    [
        ("10.0.0.5:7000", ("10.0.0.5", 7000)),
        ("[2001:db8::20]:7000", ("2001:db8::20", 7000)),
        ("[::1]:1", ("::1", 1)),
        ("node.lan:65535", ("node.lan", 65535)),
    ],
)
def test_addresses_read_back(text: str, split: tuple[str, int]) -> None:
    assert addresses.split(text) == split
    assert addresses.join(*split) == text


@pytest.mark.parametrize(
    "text", ["2001:db8::20:7000", "[10.0.0.5]:7000", "[2001:db8::20]", "10.0.0.5", ":7000", "10.0.0.5:0", "10.0.0.5:70000", "10.0.0.5:x", "[nonsense]:7000"]
)
def test_ambiguous_or_broken_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        addresses.split(text)
    with pytest.raises(TokenError, match="addresses"):
        decode(InviteToken("m", new_secret(), ("10.0.0.5:7000", text), "f").encode())


def test_a_token_with_ipv6_addresses_round_trips() -> None:
    token = InviteToken("abcdef0123456789", new_secret(), addresses.advertised(LAPTOP, "::", 7000), "ab" * 32)
    assert decode(token.encode()) == token
    assert decode(token.encode()).bootstrap == ("192.168.1.20:7000", "[2001:db8::20]:7000")

"""How big our QUIC datagrams may be: the MTU of the interfaces the endpoint can send on.

aioquic sends 1200-byte datagrams unless told otherwise, and its cost is per packet (Python work
for each one), so a larger datagram is the cheapest speed-up there is. We never send more than the
link carries: the size is the smallest MTU of the interfaces the bound address can use, less the
IPv6 and UDP headers, capped at what was tested with aioquic. Loopback (a test mesh on one machine)
carries 64 KiB; Ethernet 1500 bytes, i.e. 1452-byte datagrams.
"""

from __future__ import annotations

import ipaddress

import psutil

SMALLEST = 1200  # QUIC's minimum (RFC 9000), always safe
LARGEST = 16384  # aioquic misparses much larger packets (seen at 65000): keep well under
HEADERS = 48  # IPv6 (40) + UDP (8): the larger of the IPv4/IPv6 overheads


def datagram_size(bind_host: str) -> int:
    """The datagram payload size for an endpoint bound to `bind_host`."""
    mtus = interface_mtus(bind_host)
    if not mtus:
        return SMALLEST
    return max(SMALLEST, min(LARGEST, min(mtus) - HEADERS))


def interface_mtus(bind_host: str) -> list[int]:
    """MTUs of the up interfaces a socket bound to `bind_host` may send through."""
    stats = psutil.net_if_stats()
    addresses = psutil.net_if_addrs()
    try:
        bound = ipaddress.ip_address(bind_host)
    except ValueError:
        return []
    if bound.is_loopback:
        names = [name for name, addrs in addresses.items() if any(_is_loopback(a.address) for a in addrs)]
    elif bound.is_unspecified:
        # Any interface but loopback may carry a peer's traffic: the smallest MTU is the safe one.
        names = [name for name, addrs in addresses.items() if not any(_is_loopback(a.address) for a in addrs)]
    else:
        names = [name for name, addrs in addresses.items() if any(a.address.split("%")[0] == bind_host for a in addrs)]
    return [stats[name].mtu for name in names if name in stats and stats[name].isup and stats[name].mtu > 0]


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False

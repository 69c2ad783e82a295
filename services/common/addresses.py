"""Peer addresses as text, and which of this machine's addresses a node tells others to dial.

"host:port" with IPv6 hosts in brackets ("[2001:db8::1]:7000"), so the last colon always starts
the port. Which addresses: every address another machine may reach this node's QUIC socket at,
the likeliest first (gossip tells peers the first one). Pure: the interface list is passed in
(the CLI reads it); no sockets here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

# Interfaces of containers and virtual machines on this host: their addresses are reachable from
# those guests only, so they come after the host's own (still in the token: a guest may join).
GUEST_BRIDGES = ("docker", "br-", "virbr", "veth", "cni", "flannel", "podman", "lxcbr", "lxdbr", "vmnet", "vboxnet")


@dataclass(frozen=True)
class InterfaceAddress:
    interface: str  # the interface's name (eth0, wlan0, docker0)
    ip: str  # the address on it, IPv6 possibly with its %scope


def join(host: str, port: int) -> str:
    """'host:port', the host in brackets when it is IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split(address: str) -> tuple[str, int]:
    """(host, port) of 'host:port' or '[ipv6]:port'; ValueError when it is neither."""
    host, separator, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host.split("%")[0])  # ValueError unless IPv6
    elif ":" in host:
        raise ValueError(f"{address!r}: an IPv6 address needs brackets, as in [::1]:7000")
    if not (separator and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{address!r} is not host:port")
    return host, int(port)


def advertised(interfaces: Iterable[InterfaceAddress], bound_host: str, port: int) -> tuple[str, ...]:
    """Where other machines may dial a node whose QUIC socket is bound to bound_host:port.

    Bound to one address (a test mesh's 127.0.0.x, a chosen interface): that address only.
    Bound to all (0.0.0.0 or ::): every non-loopback address of the socket's family ('::' takes
    IPv4 too), host interfaces before guest bridges, IPv4 before IPv6. IPv6 link-local ones are
    left out: their scope (%eth0) names an interface of this machine, and the joiner's way to the
    same link is its own interface with its own name, which a token cannot know. Loopback only
    when nothing else exists: a machine with no network can still be joined from itself.
    """
    try:
        bound = ipaddress.ip_address(bound_host or "0.0.0.0")
    except ValueError:
        return (join(bound_host, port),)  # a host name: peers resolve it
    if not bound.is_unspecified:
        return (join(bound_host, port),)
    chosen: dict[str, tuple[bool, bool, int]] = {}
    for entry in interfaces:
        ip = _usable(entry.ip, ipv6=bound.version == 6)
        if ip is not None and str(ip) not in chosen:
            chosen[str(ip)] = (entry.interface.startswith(GUEST_BRIDGES), ip.is_link_local, ip.version)
    if not chosen:
        return (join("::1" if bound.version == 6 else "127.0.0.1", port),)
    return tuple(join(ip, port) for ip in sorted(chosen, key=chosen.__getitem__))


def _usable(text: str, ipv6: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address when a peer on another machine could dial it on a socket bound to all addresses."""
    try:
        ip = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
        return None
    if ip.version == 6 and (not ipv6 or ip.is_link_local):
        return None  # an IPv4 socket cannot answer IPv6; link-local: see advertised()
    return ip

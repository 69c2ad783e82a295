"""Free loopback ports for the services and children a node starts, held until they bind them.

A port found free by binding port 0 and closing the probe is free for anyone: between the probe
and the child's own bind, another process (another node on this machine, a busy test run) can be
handed the same port by the kernel, and then one of the two fails to start or, worse, a sibling
talks to a stranger's server. A TCP port is held instead by leaving it in TIME_WAIT (an accepted
connection that we close first): for the next minute the kernel hands it to no bind(0) and no
outgoing connection, while a listener that sets SO_REUSEADDR (gRPC, uvicorn, prometheus_client,
llama-server, rpc-server all do) can still bind it. This is what Yelp's ephemeral-port-reserve
does.

Owns only choosing ports; it never keeps a socket open.
"""

from __future__ import annotations

import socket


def reserve_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that no one else is handed for about a minute (TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(1)
        address = listener.getsockname()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.connect(address)
            accepted, _ = listener.accept()
            accepted.close()  # the side that closes first holds the port in TIME_WAIT: ours
    return address[1]


def family_of(host: str) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 address (`::`, `::1`), else AF_INET."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on `host` free right now (UDP has no TIME_WAIT to hold it with)."""
    with socket.socket(family_of(host), socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]

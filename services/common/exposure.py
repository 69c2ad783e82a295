"""Which addresses face other machines: the one rule behind every bind of the API and console.

Pure: no sockets. The API may bind beyond loopback only with an API key; the console (it shows
the invite token, which carries the mesh secret) never does.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True only for addresses no other machine can reach: 127.0.0.0/8, ::1, `localhost`.

    A host name other than `localhost` counts as reachable: what it resolves to can change.
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False

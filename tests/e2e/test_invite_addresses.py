"""An invite token another machine can use: it carries this machine's real addresses, and a joiner
tries every address it carries at once, joining through whichever answers."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

import httpx
import psutil
import pytest

from services.common import addresses
from services.common.invite import InviteToken, decode
from tests.nodes import is_loopback

pytestmark = pytest.mark.e2e


def test_a_node_bound_to_every_interface_invites_through_its_real_addresses(start_node) -> None:
    """Bound to 0.0.0.0 (no --host): the token holds every non-loopback IPv4 address of this machine
    and no loopback one (the host name's address is 127.0.1.1 or 127.0.0.1 on Debian and Ubuntu)."""
    node = start_node()
    hosts = [addresses.split(address)[0] for address in decode(node.token()).bootstrap]
    machine = {
        entry.address for entries in psutil.net_if_addrs().values() for entry in entries if entry.family == socket.AF_INET and not is_loopback(entry.address)
    }
    if machine:
        assert set(hosts) == machine, hosts
    else:  # a machine without a network: only nodes on itself can join
        assert hosts == ["127.0.0.1"]
    # The console's token (and rotate-key's) carries the same addresses as the printed one.
    assert decode(console_token(node)).bootstrap == decode(node.token()).bootstrap


def console_token(node, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node.check_alive()
        try:
            if token := node.status()["token"]:
                return token
        except httpx.HTTPError:
            pass  # the console is not up yet
        time.sleep(0.1)
    raise AssertionError(f"the console showed no token:\n{node.log_tail()}")


def test_a_joiner_given_dead_addresses_first_joins_through_the_live_one(mesh_bed) -> None:
    """The token lists many addresses that never answer (bound, never read: machines that drop our
    packets) before the live one. Tried one by one, each would cost a probe timeout (0.4 s) and the
    joiner would give up long before reaching the live one; tried at once, the live one answers."""
    a = mesh_bed.start("A")
    real = decode(a.token())
    with ExitStack() as stack:
        dead = []
        for _ in range(60):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.bind(("127.0.0.1", 0))
            dead.append(addresses.join(*sock.getsockname()))
        token = InviteToken(real.mesh_id, real.secret, (*dead, *real.bootstrap), real.fingerprint).encode()
        joiner = mesh_bed.start("J", "--join-timeout", "2", token=token)
        mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(["A", "J"]), 30, "joined through the live address")
        # The line comes a moment after the views agree (gossip publishes its state before it logs).
        mesh_bed.wait_until(lambda: f"joined mesh seed={real.bootstrap[0]}" in joiner.log_path.read_text(), 10, "the join logged")

"""When a peer's RTT is news for placement and the gateway (membership.rtt_is_news)."""

from __future__ import annotations

import pytest

from services.gossip.membership import rtt_is_news


@pytest.mark.parametrize(
    ("told", "rtt", "news"),
    [
        (None, 0.0003, True),  # the first sample of a peer
        (0.0003, 0.0009, False),  # loopback jitter: under the 2 ms floor
        (0.0003, 0.0025, True),  # over the floor
        (0.010, 0.0115, False),  # a LAN peer, +15%
        (0.010, 0.0125, True),  # +25%
        (0.010, 0.0075, True),  # -25%
        (0.060, 0.075, True),  # drifting towards the 80 ms split cap: told in steps of at most 20%
        (0.100, 0.110, False),
    ],
)
def test_rtt_is_news(told: float | None, rtt: float, news: bool) -> None:
    assert rtt_is_news(told, rtt) is news

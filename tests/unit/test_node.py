"""The node launcher's restart rule: back off 0.5 s doubling (10 s at most), give up on a service that
keeps dying (more than 5 restarts in 60 s) or refuses its settings (exit code 2)."""

from __future__ import annotations

import pytest

from services.cli.node import restart_delay


@pytest.mark.parametrize(
    ("deaths", "now", "code", "delay"),
    [
        ([100.0], 100.0, -9, 0.5),  # the first crash: started again at once, nearly
        ([100.0, 101.0], 101.0, 1, 1.0),
        ([100.0, 101.0, 102.0, 103.0], 103.0, 1, 4.0),
        ([100.0, 101.0, 102.0, 103.0, 104.0], 104.0, 1, 8.0),  # the fifth restart in a minute
        ([100.0, 101.0, 102.0, 103.0, 104.0, 105.0], 105.0, 1, None),  # a sixth: it keeps dying
        ([10.0, 20.0, 30.0, 40.0, 50.0, 100.0], 100.0, 1, 2.0),  # deaths older than a minute are forgiven
        ([100.0], 100.0, 2, None),  # a bad setting fails the same way every time
        ([100.0], 100.0, 0, 0.5),  # a service has no reason to end on its own: it is started again
    ],
)
def test_restart_delay(deaths: list[float], now: float, code: int, delay: float | None) -> None:
    assert restart_delay(deaths, now, code) == delay

"""`mesh-llm blackboard feed --since`: a time ago or a date, else one line."""

from __future__ import annotations

from datetime import datetime

import pytest

from services.cli.blackboard import since_of
from services.cli.flags import UsageError

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - 30),
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("1.5d", NOW - 1.5 * 86400),
        ("2025-01-31", datetime(2025, 1, 31).timestamp()),
        ("2025-01-31T14:00", datetime(2025, 1, 31, 14).timestamp()),
        ("2025-01-31T14:00:00+00:00", 1738332000.0),
    ],
)
def test_since_reads_a_time_ago_or_a_date(text: str, expected: float) -> None:
    assert since_of(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "10", "10 m", "-1h", "2025-13-01"])
def test_anything_else_is_one_line(text: str) -> None:
    with pytest.raises(UsageError, match="a time ago"):
        since_of(text, NOW)

"""Under CI=true a skipped test fails: a green CI must mean every test ran.

A test skips where a tool is missing (Chromium for the console test, Prometheus for the scrape
test) so that a developer's partial machine still runs the rest; CI's machine is set up by
`make test`, so there a skip means the setup is broken. Loaded by tests/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and under_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, None, None]:
    """The same for a whole module skipped while it is collected (importorskip, allow_module_level)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and under_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"

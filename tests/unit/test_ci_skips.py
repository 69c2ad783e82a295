"""Under CI=true a test that skips for a missing tool fails; elsewhere it skips."""

from __future__ import annotations

import pytest

MISSING_TOOL = """
import shutil
import pytest

@pytest.mark.skipif(shutil.which("no-such-tool-mesh-llm") is None, reason="no-such-tool is not installed")
def test_needs_the_tool():
    pass

def test_skips_inside():
    pytest.skip("chromium is not installed")

@pytest.mark.xfail(reason="known", strict=False)
def test_expected_failure():
    assert False

def test_runs():
    pass
"""


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_a_skip_fails_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(MISSING_TOOL)
    result = pytester.runpytest("-p", "tests.ci_skips")
    # The skipif fires in setup (an error), pytest.skip in the call (a failure); xfail stays xfail.
    result.assert_outcomes(passed=1, errors=1, failed=1, xfailed=1, skipped=0)
    result.stdout.fnmatch_lines(["*skipped under CI=true*no-such-tool is not installed*"])
    assert result.ret != 0


def test_a_skip_is_a_skip_elsewhere(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(MISSING_TOOL)
    result = pytester.runpytest("-p", "tests.ci_skips")
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert result.ret == 0


MODULE_SKIPPED = """
import pytest
pytest.importorskip("no_such_module_mesh_llm")

def test_never_collected():
    pass
"""


def test_a_module_skipped_while_collected_fails_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(MODULE_SKIPPED)
    result = pytester.runpytest("-p", "tests.ci_skips")
    result.assert_outcomes(errors=1, skipped=0)
    assert result.ret != 0
    monkeypatch.delenv("CI")
    pytester.runpytest("-p", "tests.ci_skips").assert_outcomes(skipped=1)

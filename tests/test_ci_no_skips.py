"""A skip fails the CI run and stays a skip elsewhere (tests/ci_no_skips.py)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SKIPPING = """
import shutil, pytest

@pytest.mark.skipif(not shutil.which("no-such-server-anywhere"), reason="no-such-server-anywhere not installed")
def test_needs_a_server():
    pass

def test_runs():
    pass
"""


# A skipif marker skips at set-up, so in CI it shows as an error of the set-up phase.
@pytest.mark.parametrize("ci, failed, skipped", [("true", 1, 0), ("", 0, 1)])
def test_a_skip_fails_only_in_ci(pytester: pytest.Pytester, monkeypatch, ci, failed, skipped):
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest("-p", "tests.ci_no_skips", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=failed, skipped=skipped)
    if failed:
        result.stdout.fnmatch_lines(["*skipped in CI (no-such-server-anywhere not installed)*"])

"""In CI a skipped test fails the run: every server and browser the checks need is there.

``.ci/run`` (through ``make test``) installs PostgreSQL, Redis, nginx and chromium, so a
check that skips in CI did not run for a reason nobody asked for (a package gone missing,
a path changed); a green run must mean every check ran. On a developer's machine a skip
stays a skip.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """Is this the CI run (``CI=true``, as ``.ci/run`` sets)?"""
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201 - pluggy hookwrapper
    """Turn a skip into a failure that says why, in CI only."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI ({reason}): CI installs every server and browser the checks need "
            "(scripts/system_packages.sh), so this check must run there"
        )

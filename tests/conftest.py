"""Unit-test fixtures: the domain, a tracker factory and a dispatcher (rasa-demo style).

The fixtures that start processes, and the ``process`` marker, are in tests/harness/fixtures.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from hypothesis import HealthCheck, settings as hypothesis_settings
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from tests.harness.examples import REPO_EXAMPLES

ROOT = Path(__file__).resolve().parent.parent

# In CI (CI=true) a skipped test fails the run (tests/ci_no_skips.py).
pytest_plugins = ["tests.ci_no_skips", "tests.harness.fixtures"]


@pytest.fixture(scope="session")
def domain() -> Dict[str, Any]:
    """The assistant's domain (all files under domain/) as the action server sees it."""
    from rasa.shared.core.domain import Domain

    return Domain.load(str(ROOT / "domain")).as_dict()


@pytest.fixture
def dispatcher() -> CollectingDispatcher:
    """A dispatcher that collects what the action sends."""
    return CollectingDispatcher()


@pytest.fixture
def make_tracker():
    """Build a tracker with the given slots, latest message and form state."""

    def build(
        slots: Optional[Dict[str, Any]] = None,
        text: str = "",
        intent: str = "",
        entities: Optional[List[Dict[str, Any]]] = None,
        intent_ranking: Optional[List[Dict[str, Any]]] = None,
        events: Optional[List[Dict[str, Any]]] = None,
        active_loop: Optional[str] = None,
    ) -> Tracker:
        latest = {
            "text": text,
            "intent": {"name": intent, "confidence": 1.0},
            "entities": entities or [],
            "intent_ranking": intent_ranking or [],
        }
        return Tracker(
            sender_id="merchant-1",
            slots={"language": "zh", **(slots or {})},
            latest_message=latest,
            events=events or [],
            paused=False,
            followup_action=None,
            active_loop={"name": active_loop} if active_loop else {},
            latest_action_name="action_listen",
        )

    return build


# Property-based tests (hypothesis): the same examples on every run, bounded, no
# example database in the working tree. make test-fast tries fewer (the "fast" profile);
# HYPOTHESIS_PROFILE=explore searches wider. Counts a test sets itself scale alike
# (tests/harness/examples.py).
_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
hypothesis_settings.register_profile(
    "repo", derandomize=True, deadline=None, database=None, max_examples=REPO_EXAMPLES, suppress_health_check=_HEALTH
)
hypothesis_settings.register_profile(
    "fast", derandomize=True, deadline=None, database=None, max_examples=REPO_EXAMPLES // 5, suppress_health_check=_HEALTH
)
hypothesis_settings.register_profile("explore", deadline=None, database=None, max_examples=2000, suppress_health_check=_HEALTH)


def pytest_configure(config: pytest.Config) -> None:
    """The hypothesis profile, before the test modules (and their ``examples()``) are imported:
    HYPOTHESIS_PROFILE if set, else "fast" for the unit run (``-m "... not process"``), else "repo"."""
    unit_run = "not process" in (config.getoption("markexpr") or "")
    hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("fast" if unit_run else "repo"))


@pytest.fixture(autouse=True, scope="session")
def quick_password_hashes() -> Any:
    """The desk's argon2id hashes with small costs in-process: each desk test creates one or
    two accounts, and the production costs (64 MiB, 3 passes, ~0.3 s a hash) made account
    set-up most of the unit run. Still argon2id, still verified by argon2; the desk
    processes the process tests start keep the production costs."""
    from argon2 import PasswordHasher

    from support_desk import accounts

    production = accounts._HASHER
    accounts._HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    accounts._HASHER = production

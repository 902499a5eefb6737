"""How many examples a property-based test tries, by the loaded hypothesis profile.

The profiles are registered in tests/conftest.py: ``repo`` (``make test``: 100 examples a
test), ``fast`` (``make test-fast``, loaded when ``-m`` leaves the process tests out: a fifth
of that) and ``explore`` (``HYPOTHESIS_PROFILE=explore``: twenty times as many). A test that
asks for its own count writes ``@settings(max_examples=examples(400))``: 400 in ``make test``,
scaled like the profile elsewhere. Every profile is derandomized or has no example database,
so each run tries the same examples."""

from __future__ import annotations

from hypothesis import settings

REPO_EXAMPLES = 100


def examples(full: int) -> int:
    """``full`` under the repo profile, scaled by the loaded profile's ``max_examples`` (at least one)."""
    return max(1, full * settings().max_examples // REPO_EXAMPLES)

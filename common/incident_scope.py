"""Whether an incident's scope covers a merchant: pure code the bot and the desk share.

A scope has four dimensions, each a list: ``regions`` (hierarchical region codes of
``data/knowledge/regions.yml``: province ``"44"``, city ``"4403"``), ``channels``,
``gateways`` and ``terminal_models``. An empty or missing list matches anything. A
merchant is ``{"region", "channel", "gateway", "terminal_model"}``, each a string or None
when the bot does not know it.

``matches`` answers True (covered), False (a known value is outside the scope) or None
(undecided: a dimension the scope restricts is unknown for the merchant; the bot then
asks, or treats the incident as not matching, see ``undecided_dimensions``).
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

# Scope dimension → the merchant's field it restricts.
DIMENSIONS = {
    "regions": "region",
    "channels": "channel",
    "gateways": "gateway",
    "terminal_models": "terminal_model",
}


def _values(scope: Optional[Mapping[str, Any]], dimension: str) -> List[str]:
    raw = (scope or {}).get(dimension) or []
    return [str(value).strip().lower() for value in raw if str(value).strip()]


def _within_region(merchant_region: str, scope_region: str) -> bool:
    # A province scope "44" covers every city "44xx"; a city scope does not cover a
    # merchant known only by province (that stays undecided, see _dimension_match).
    return merchant_region.startswith(scope_region)


def _dimension_match(dimension: str, allowed: List[str], value: Optional[str]) -> Optional[bool]:
    if not allowed:
        return True
    if value is None or not str(value).strip():
        return None
    known = str(value).strip().lower()
    if dimension != "regions":
        return known in allowed
    if any(_within_region(known, region) for region in allowed):
        return True
    if any(region.startswith(known) for region in allowed):
        return None  # the merchant's province holds an affected city: which city?
    return False


def matches(scope: Optional[Mapping[str, Any]], merchant: Mapping[str, Optional[str]]) -> Optional[bool]:
    """True when the scope covers the merchant, False when it does not, None when undecided.

    A known value outside any dimension makes it False even while another one is unknown:
    asking the merchant something cannot bring them into the scope then.
    """
    results = [_dimension_match(dimension, _values(scope, dimension), merchant.get(field)) for dimension, field in DIMENSIONS.items()]
    if False in results:
        return False
    return None if None in results else True


def undecided_dimensions(scope: Optional[Mapping[str, Any]], merchant: Mapping[str, Optional[str]]) -> List[str]:
    """The scope dimensions that leave ``matches`` undecided for this merchant."""
    return [
        dimension
        for dimension, field in DIMENSIONS.items()
        if _dimension_match(dimension, _values(scope, dimension), merchant.get(field)) is None
    ]

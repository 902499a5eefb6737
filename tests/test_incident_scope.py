"""Incident scope matching (common/incident_scope.py) and the region table (actions/regions.py)."""

from __future__ import annotations

import pytest

from actions.regions import load_regions
from common.incident_scope import matches, undecided_dimensions

SHENZHEN_KF = {"region": "4403", "channel": "wecom_kf", "gateway": None, "terminal_model": "pax_a920"}


@pytest.mark.parametrize(
    "scope, expected",
    [
        ({}, True),
        (None, True),
        ({"regions": [], "channels": [], "gateways": [], "terminal_models": []}, True),
        ({"regions": ["4403"]}, True),
        ({"regions": ["44"]}, True),  # the province covers its cities
        ({"regions": ["4401"]}, False),  # another city of the same province
        ({"regions": ["31", "4403"]}, True),
        ({"channels": ["socketio"]}, False),
        ({"channels": ["WeCom_KF"]}, True),  # case does not matter
        ({"terminal_models": ["pax_a920", "newland_n910"]}, True),
        ({"regions": ["44"], "terminal_models": ["newland_n910"]}, False),
        ({"gateways": ["unionpay-south"]}, None),  # the bot never knows the gateway
    ],
)
def test_a_known_merchant(scope, expected):
    assert matches(scope, SHENZHEN_KF) is expected


def test_unknown_values_leave_it_undecided_and_say_which():
    merchant = {"region": None, "channel": "socketio", "gateway": None, "terminal_model": None}
    scope = {"regions": ["4403"], "terminal_models": ["pax_a920"]}
    assert matches(scope, merchant) is None
    assert undecided_dimensions(scope, merchant) == ["regions", "terminal_models"]
    assert undecided_dimensions({"regions": ["4403"]}, merchant) == ["regions"]


def test_a_known_value_outside_the_scope_beats_an_unknown_one():
    merchant = {"region": None, "channel": "socketio", "gateway": None, "terminal_model": None}
    assert matches({"regions": ["4403"], "channels": ["wecom_kf"]}, merchant) is False


def test_a_merchant_known_by_province_only_is_undecided_for_a_city_scope():
    merchant = {"region": "44", "channel": None, "gateway": None, "terminal_model": None}
    assert matches({"regions": ["4403"]}, merchant) is None
    assert matches({"regions": ["31"]}, merchant) is False


@pytest.mark.parametrize(
    "number, region",
    [
        ("898440312345678", "4403"),  # Shenzhen, a city prefix
        ("898440512345678", "44"),  # a Guangdong city not listed: the province prefix
        ("898310048160123", "31"),  # Shanghai
        ("123456789012345", None),  # an acquirer code the table does not know
        ("89844031234567", None),  # 14 digits is no merchant number
        (None, None),
    ],
)
def test_merchant_number_prefixes(number, region):
    assert load_regions().of_merchant_number(number) == region


@pytest.mark.parametrize(
    "typed, region",
    [
        ("深圳", "4403"),
        ("我店在深圳市南山区", "4403"),  # the longest name wins over 广东
        ("广东", "44"),
        ("we're in shenzhen", "4403"),
        ("商户号 898330112345678", "3301"),
        ("火星", None),
        ("", None),
    ],
)
def test_typed_regions(typed, region):
    assert load_regions().from_text(typed) == region


def test_every_city_has_a_listed_province_and_every_prefix_a_listed_region():
    table = load_regions()
    data = table._regions  # noqa: SLF001 - the file's own consistency
    for code, entry in data.items():
        assert entry.names.get("zh") and entry.names.get("en"), code
        if entry.parent:
            assert entry.parent in data and code.startswith(entry.parent), code
    for prefix, code in table._prefixes.items():  # noqa: SLF001
        assert code in data, prefix
        assert prefix.startswith("898") and prefix[3:].startswith(code), prefix

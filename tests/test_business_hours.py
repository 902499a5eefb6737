"""The desk's business-hours clock with fixed times: the merchant's promised reply time
and the queue's SLA badge count the same minutes."""

from __future__ import annotations

from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from support_desk.config import load_settings
from support_desk.console import sla_state
from common.hours import BusinessHours, add_business_minutes, business_minutes_between, expected_reply_by

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Monday to Friday, 09:00-18:00 Shanghai time.
WEEKDAYS = BusinessHours(timezone="Asia/Shanghai", days=[0, 1, 2, 3, 4], open=time(9), close=time(18))
SLA = {"urgent": 15, "high": 30, "normal": 120}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2026 in Shanghai: the 4th is a Friday, the 5th a Saturday."""
    return datetime(2026, 12, day, hour, minute, tzinfo=SHANGHAI)


def case(created: datetime, priority: str = "normal", **changes) -> dict:
    return {
        "created_at": created.astimezone(timezone.utc).isoformat(),
        "priority": priority,
        "first_reply_at": None,
        "status": "open",
        **changes,
    }


def test_minutes_inside_one_day():
    assert business_minutes_between(at(4, 10), at(4, 11, 30), WEEKDAYS) == 90


def test_nights_and_weekends_do_not_count():
    assert business_minutes_between(at(4, 18), at(5, 12), WEEKDAYS) == 0  # Friday evening → Saturday
    assert business_minutes_between(at(4, 17), at(7, 10), WEEKDAYS) == 120  # Fri 17-18 + Mon 9-10
    assert business_minutes_between(at(3, 20), at(4, 8), WEEKDAYS) == 0  # a night


def test_end_before_start_is_zero():
    assert business_minutes_between(at(4, 12), at(4, 10), WEEKDAYS) == 0


def test_adding_minutes_spills_past_closing_into_the_next_open_day():
    assert add_business_minutes(at(4, 10), 30, WEEKDAYS) == at(4, 10, 30)
    assert add_business_minutes(at(4, 17, 50), 30, WEEKDAYS) == at(7, 9, 20)  # Fri → Mon
    assert add_business_minutes(at(5, 11), 30, WEEKDAYS) == at(7, 9, 30)  # Saturday → Monday
    assert add_business_minutes(at(4, 7), 0, WEEKDAYS) == at(4, 9)


def test_adding_and_counting_agree():
    start = at(4, 16, 20)
    for minutes in (0, 1, 99, 100, 101, 540, 541, 2000):
        end = add_business_minutes(start, minutes, WEEKDAYS)
        assert business_minutes_between(start, end, WEEKDAYS) == pytest.approx(minutes)


def test_expected_reply_by_is_in_business_minutes_with_the_shipped_hours():
    hours = load_settings(environ={}).business_hours  # Monday to Saturday, 09:00-18:00
    assert expected_reply_by(at(4, 17, 50), hours, 30) == at(5, 9, 20)
    assert expected_reply_by(at(6, 15), hours, 30) == at(7, 9, 30)  # Sunday → Monday
    assert expected_reply_by(at(4, 11), hours, 30) == at(4, 11, 30)


def test_a_case_from_friday_evening_is_not_breached_over_the_weekend():
    friday_evening = case(at(4, 18))
    assert sla_state(friday_evening, SLA, WEEKDAYS, at(5, 18)) == "ok"
    assert sla_state(friday_evening, SLA, WEEKDAYS, at(7, 10, 36)) == "due"  # 96 of 120 minutes
    assert sla_state(friday_evening, SLA, WEEKDAYS, at(7, 11)) == "breached"


def test_sla_limits_per_priority_and_answered_cases():
    monday = case(at(7, 10), priority="urgent")
    assert sla_state(monday, SLA, WEEKDAYS, at(7, 10, 11)) == "ok"
    assert sla_state(monday, SLA, WEEKDAYS, at(7, 10, 12)) == "due"
    assert sla_state(monday, SLA, WEEKDAYS, at(7, 10, 15)) == "breached"
    assert sla_state({**monday, "first_reply_at": at(7, 10, 5).isoformat()}, SLA, WEEKDAYS, at(8, 9)) == "done"
    assert sla_state({**monday, "status": "resolved"}, SLA, WEEKDAYS, at(8, 9)) == "done"


def test_a_daylight_saving_change_counts_real_minutes():
    # New York's clocks go back at 02:00 on 2026-11-01: a 24-hour day has 25 real hours.
    night = BusinessHours(timezone="America/New_York", days=list(range(7)), open=time(0), close=time(23, 59))
    zone = ZoneInfo("America/New_York")
    start = datetime(2026, 11, 1, 0, 30, tzinfo=zone)
    end = datetime(2026, 11, 1, 3, 30, tzinfo=zone)
    # 00:30 → 03:30 on the wall clock is four real hours (01:00-02:00 happens twice).
    assert business_minutes_between(start, end, night) == 240

"""The desk's one clock: business minutes, for the merchant's promise and the agents' SLA.

Only minutes inside the business hours (``common/business_hours.yml``) count, so a case that arrives
after closing on Friday is not late on Saturday morning when the desk is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Iterator, List, Tuple
from zoneinfo import ZoneInfo

import yaml

BUSINESS_HOURS_FILE = Path(__file__).with_name("business_hours.yml")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours of the agents, in one time zone."""

    timezone: str
    days: List[int]
    open: time
    close: time


@dataclass(frozen=True)
class ReplyClock:
    """The business hours and the first reply promised within them."""

    hours: BusinessHours
    first_reply_minutes: int


def load_reply_clock(path: Path = BUSINESS_HOURS_FILE) -> ReplyClock:
    """``common/business_hours.yml``, as both the action server and the desk read it."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return ReplyClock(
        hours=BusinessHours(
            timezone=str(raw["timezone"]),
            days=[WEEKDAYS.index(day) for day in raw["days"]],
            open=time.fromisoformat(str(raw["open"])),
            close=time.fromisoformat(str(raw["close"])),
        ),
        first_reply_minutes=int(raw["first_reply_minutes"]),
    )


# Far enough for any real wait; bounds the loops when the hours have no open day.
_MAX_DAYS = 3660


def _open_spans(start: datetime, hours: BusinessHours) -> Iterator[Tuple[datetime, datetime]]:
    """The business-hours spans (UTC) from ``start``'s local day on, in order."""
    zone = ZoneInfo(hours.timezone)
    first = start.astimezone(zone).date()
    for day in range(_MAX_DAYS):
        date = first + timedelta(days=day)
        if date.weekday() not in hours.days:
            continue
        # Converted to UTC before any arithmetic: aware times sharing one tzinfo
        # subtract as wall-clock times, which is wrong across a DST change.
        opening = datetime.combine(date, hours.open, tzinfo=zone).astimezone(timezone.utc)
        closing = datetime.combine(date, hours.close, tzinfo=zone).astimezone(timezone.utc)
        yield opening, closing


def add_business_minutes(start: datetime, minutes: float, hours: BusinessHours) -> datetime:
    """The moment ``minutes`` business minutes after ``start`` (UTC), spilling past a
    closing into the next open day."""
    left = timedelta(minutes=minutes)
    start = start.astimezone(timezone.utc)
    for opening, closing in _open_spans(start, hours):
        if closing <= start:
            continue
        begin = max(start, opening)
        if begin + left <= closing:
            return begin + left
        left -= closing - begin
    raise ValueError("business hours have no open day")


def business_minutes_between(start: datetime, end: datetime, hours: BusinessHours) -> float:
    """How many business minutes lie between ``start`` and ``end`` (0 if end is earlier)."""
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    total = timedelta()
    for opening, closing in _open_spans(start, hours):
        if opening >= end:
            break
        total += max(timedelta(), min(closing, end) - max(opening, start))
    return total.total_seconds() / 60


def expected_reply_by(now: datetime, hours: BusinessHours, minutes: int) -> datetime:
    """When the merchant can expect an agent: ``minutes`` business minutes from now."""
    return add_business_minutes(now, minutes, hours)

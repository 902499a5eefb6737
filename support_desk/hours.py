"""When a merchant can expect an agent's answer, given the business hours."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from support_desk.config import BusinessHours


def expected_reply_by(now: datetime, hours: BusinessHours, minutes: int) -> datetime:
    """``minutes`` after now inside business hours, else after the next opening."""
    zone = ZoneInfo(hours.timezone)
    local = now.astimezone(zone)
    for day in range(8):
        date = (local + timedelta(days=day)).date()
        if date.weekday() not in hours.days:
            continue
        opening = datetime.combine(date, hours.open, tzinfo=zone)
        closing = datetime.combine(date, hours.close, tzinfo=zone)
        if local < closing:
            return max(local, opening) + timedelta(minutes=minutes)
    raise ValueError("business hours have no open day")

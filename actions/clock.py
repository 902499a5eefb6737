"""Times as merchants read them: in the business time zone of the desk's agents."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Optional
from zoneinfo import ZoneInfo

from common.hours import ReplyClock, load_reply_clock


@lru_cache(maxsize=1)
def reply_clock() -> ReplyClock:
    """Business hours and the first-reply promise (common/business_hours.yml), read once."""
    return load_reply_clock()


@lru_cache(maxsize=1)
def business_zone() -> ZoneInfo:
    """The time zone of the business hours."""
    return ZoneInfo(reply_clock().hours.timezone)


def local_time(iso_text: Optional[str]) -> Optional[str]:
    """``11-25 14:00`` for an ISO time (UTC assumed without an offset); raw text if not ISO."""
    if not iso_text:
        return None
    try:
        moment = datetime.fromisoformat(str(iso_text).replace("Z", "+00:00"))
    except ValueError:
        return str(iso_text)[:40]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(business_zone()).strftime("%m-%d %H:%M")

"""Times as merchants read them: in the support desk's business time zone."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Optional
from zoneinfo import ZoneInfo

from support_desk.config import DeskSettings, load_settings as load_desk_settings


@lru_cache(maxsize=1)
def desk_settings() -> DeskSettings:
    """The desk's settings (business hours, reply promise), read once per process."""
    return load_desk_settings()


@lru_cache(maxsize=1)
def business_zone() -> ZoneInfo:
    """The time zone of the desk's business hours (support_desk/settings.yml)."""
    return ZoneInfo(desk_settings().business_hours.timezone)


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

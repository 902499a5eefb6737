"""Input checks for the API: clear messages for the 400 responses."""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from typing import Any, Dict, Optional


class Invalid(ValueError):
    """The request is malformed; the message tells the client what to fix.

    The message is English (API clients read it). ``key`` and ``params`` let the
    console say the same in the agent's language: ``invalid_<key>`` of
    console_text.yml, formatted with ``params`` (a ``field`` named by its form label).
    """

    def __init__(self, message: str, key: Optional[str] = None, **params: Any) -> None:
        super().__init__(message)
        self.key = key
        self.params = params


def _clean(value: str) -> str:
    # Control characters other than newline and tab have no place in a support chat;
    # unpaired surrogates (JSON "\ud800") cannot be stored as UTF-8.
    return "".join(ch for ch in value if (ch in "\n\t" or ord(ch) >= 32) and not 0xD800 <= ord(ch) <= 0xDFFF).strip()


def required_text(body: Dict[str, Any], key: str, max_length: int, allow_blank: bool = False) -> str:
    """A string field that must be present (non-blank unless allowed) and not too long."""
    value = body.get(key)
    if not isinstance(value, str):
        raise Invalid(f"{key} is required and must be a string", "required", field=key)
    value = _clean(value)
    if not value and not allow_blank:
        raise Invalid(f"{key} must not be empty", "required", field=key)
    if len(value) > max_length:
        raise Invalid(f"{key} is longer than {max_length} characters", "too_long", field=key, max=max_length)
    return value


def optional_text(body: Dict[str, Any], key: str, max_length: int) -> Optional[str]:
    """A string field that may be absent or null; blank becomes None."""
    if body.get(key) is None:
        return None
    return required_text(body, key, max_length, allow_blank=True) or None


def parse_time(body: Dict[str, Any], key: str, zone: tzinfo = timezone.utc) -> Optional[datetime]:
    """An ISO 8601 time (in ``zone``, UTC by default, without an offset), or None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(f"{key} must be an ISO 8601 time string", "time", field=key)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{key} is not an ISO 8601 time: {value[:40]!r}", "time", field=key) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)

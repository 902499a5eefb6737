"""The queue's search box and filters, read from the query string and checked.

A value outside what the queue knows is refused with a message next to its field and
the value kept in the form, never ignored: ignoring "older than abc" showed every case
as if it matched.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional
from urllib.parse import urlencode

from support_desk.pagination import Cursor, decode_cursor
from support_desk.store import PRIORITIES, STATUSES
from support_desk.validation import Invalid

MAX_OLDER_THAN = 525_600  # a year of minutes: beyond that no case is waiting
MAX_SEARCH = 64
_MINUTES = re.compile(r"[0-9]{1,6}")


@dataclass
class QueueFilters:
    """What the agent asked for: the checked values, what was typed, and the errors
    (field → the ``console_text.yml`` key of its message)."""

    status: Optional[str] = None
    priority: Optional[str] = None
    older_than: Optional[int] = None
    search: Optional[str] = None
    # Where the page starts (the queue's newer / older links); None: the newest cases.
    cursor: Optional[Cursor] = None
    typed: Dict[str, str] = field(default_factory=dict)
    errors: Dict[str, str] = field(default_factory=dict)

    def page_link(self, cursor: str) -> str:
        """The queue's URL for another page with the same filters."""
        kept = {key: value for key, value in self.typed.items() if value and key != "cursor"}
        return "/console?" + urlencode({**kept, "cursor": cursor})


def parse_queue_filters(query: Mapping[str, str]) -> QueueFilters:
    """Check the queue's query string; every bad value is named in ``errors``."""
    typed = {key: _printable(query.get(key, ""))[:200] for key in ("status", "priority", "older_than", "q")}
    typed["cursor"] = query.get("cursor", "")
    filters = QueueFilters(typed=typed)
    if typed["status"]:
        if typed["status"] in STATUSES:
            filters.status = typed["status"]
        else:
            filters.errors["status"] = "bad_status"
    if typed["priority"]:
        if typed["priority"] in PRIORITIES:
            filters.priority = typed["priority"]
        else:
            filters.errors["priority"] = "bad_priority"
    # Full-width digits from a Chinese IME ("６０") are the number the agent meant.
    minutes = unicodedata.normalize("NFKC", typed["older_than"])
    if minutes:
        if _MINUTES.fullmatch(minutes) and int(minutes) <= MAX_OLDER_THAN:
            filters.older_than = int(minutes)
        else:
            filters.errors["older_than"] = "bad_older_than"
    if typed["q"]:
        if len(typed["q"]) <= MAX_SEARCH:
            filters.search = typed["q"]
        else:
            filters.errors["q"] = "bad_search"
    if typed["cursor"]:
        try:
            filters.cursor = decode_cursor(typed["cursor"])
        except Invalid:
            filters.errors["cursor"] = "bad_cursor"
    return filters


def _printable(value: str) -> str:
    # Control characters cannot be part of a ticket, number or phone; they only hide
    # what was typed when the value is shown again.
    return "".join(ch for ch in value if ch.isprintable()).strip()

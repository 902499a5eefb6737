"""Keyset pages of the desk's case lists (the API's list and the console's queue).

A page is the rows after (or before) one row in the list's order, newest first:
(created_at, id) descending. The cursor names that row and the direction, so a page
reads only its own rows through the index whatever its depth, and a case created
while an agent pages on lands before the first page instead of shifting every later
page by one (nothing skipped, nothing shown twice).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from support_desk.validation import Invalid

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR = 200  # an encoded cursor is ~60 characters; anything far longer is not one of ours


@dataclass(frozen=True)
class PageKey:
    """One row's place in the list's order."""

    created_at: datetime
    id: int


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after ``key`` (the next page) or before it (the previous)."""

    key: PageKey
    backward: bool = False


@dataclass
class Page:
    """One page of cases, newest first, and whether more lie on either side."""

    items: List[Dict[str, Any]]
    more_after: bool
    more_before: bool

    @property
    def next_cursor(self) -> Optional[str]:
        """The cursor of the page after this one (None on the last page)."""
        return encode_cursor(self.items[-1], backward=False) if self.more_after and self.items else None

    @property
    def prev_cursor(self) -> Optional[str]:
        """The cursor of the page before this one (None on the first page)."""
        return encode_cursor(self.items[0], backward=True) if self.more_before and self.items else None


def encode_cursor(case: Dict[str, Any], backward: bool) -> str:
    """An opaque, URL-safe cursor naming a listed case (its ``created_at`` and ``id``)."""
    raw = json.dumps([case["created_at"], case["id"], "b" if backward else "a"], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor a page link carried, or ``Invalid`` (a 400) for anything else."""
    if not text or len(text) > MAX_CURSOR:
        raise Invalid("cursor is not one this desk gave out")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created, case_id, direction = json.loads(raw.decode())
        at = datetime.fromisoformat(created)
        valid = (
            isinstance(case_id, int)
            and not isinstance(case_id, bool)
            and 0 < case_id < 2**63
            and direction in ("a", "b")
            and at.tzinfo is not None
        )
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        valid = False
    if not valid:
        raise Invalid("cursor is not one this desk gave out")
    return Cursor(PageKey(at.astimezone(timezone.utc), case_id), backward=direction == "b")


def parse_limit(raw: Optional[str]) -> int:
    """``limit`` from a query string: 1..MAX_LIMIT, DEFAULT_LIMIT when absent."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise Invalid(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)

"""A 1–5 rating from a button's entity or from what the merchant typed ("三分", "5 stars")."""

from __future__ import annotations

import re
from typing import Any, Optional

_CHINESE_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_DIGIT = re.compile(r"(?<![\d.])([1-5])(?![\d.])")
# A Chinese numeral counts only as a score ("三分", "五颗星", "四") — not inside words
# such as 一般 or 一直.
_CHINESE_SCORE = re.compile(r"([一二两三四五])\s*(?:分|星|颗星)|^\s*([一二两三四五])\s*$")


def parse_rating(slot_value: Any, text: Optional[str]) -> Optional[int]:
    """A rating from 1 to 5 from the slot (filled from a digit) or Chinese numerals."""
    if isinstance(slot_value, (int, float)) and float(slot_value).is_integer():
        return int(slot_value) if 1 <= slot_value <= 5 else None
    if isinstance(slot_value, str) and _DIGIT.fullmatch(slot_value.strip()):
        return int(slot_value)
    text = text or ""
    match = _DIGIT.search(text)
    if match:
        return int(match.group(1))
    scores = {_CHINESE_DIGITS[next(group for group in match.groups() if group)] for match in _CHINESE_SCORE.finditer(text)}
    return scores.pop() if len(scores) == 1 else None

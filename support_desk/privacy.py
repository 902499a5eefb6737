"""Card and phone numbers masked before anything is stored or shown.

A card number is 13–19 digits (optionally grouped by spaces or dashes) that passes the
Luhn check; it is kept as its first 6 and last 4 digits. Phone numbers are masked for
lists, where an agent does not need the whole number.
"""
from __future__ import annotations

import re

# Digits with optional single space/dash separators, not touching other digits.
_CANDIDATE = re.compile(r"(?<![\d])(?:\d[ \-]?){12,18}\d(?![\d])")
# A mainland mobile number, optionally after a country code written as "+86" or "86 ".
_PHONE = re.compile(r"(?<!\d)(\+\d{1,3}[ \-]?|86[ \-])?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def mask_card_numbers(text: str) -> str:
    """Replace every Luhn-valid 13–19 digit number by first 6 + ``******`` + last 4."""

    def replace(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return f"{digits[:6]}******{digits[-4:]}"
        return match.group(0)

    return _CANDIDATE.sub(replace, text)


def mask_phone(text: str) -> str:
    """Mask the middle four digits of mainland mobile numbers (138****5678)."""
    return _PHONE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(4)}", text)

"""Card and phone numbers masked before anything is stored or shown.

A card number is 13–19 digits (optionally grouped by spaces or dashes, half or full
width) that passes the Luhn check; it is kept as its first 6 and last 4 digits. Phone numbers are masked for
lists, where an agent does not need the whole number.
"""

from __future__ import annotations

import re

# Digit groups joined by single separators: space, dash, and their full-width forms
# (an IME in full-width mode types "４１１１　１１１１"; \d matches those digits too).
_RUN = re.compile(r"(?<!\d)\d+(?:[ \-\u3000\uff0d]\d+)*(?!\d)")
_GROUP = re.compile(r"\d+")
# A mainland mobile number, optionally after a country code written as "+86" or "86 ".
_PHONE = re.compile(r"(?<!\d)(\+\d{1,3}[ \-]?|86[ \-])?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # Luhn: a doubled digit's digit sum


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum."""
    values = [int(char) for char in reversed(digits)]
    return (sum(values[0::2]) + sum(_DOUBLED[value] for value in values[1::2])) % 10 == 0


def mask_card_numbers(text: str) -> str:
    """Replace every Luhn-valid 13–19 digit number by first 6 + ``******`` + last 4.

    Within a run of digit groups ("4111 1111 1111 1111 2"), the longest consecutive
    groups that make a card number are masked, so a number written next to the card
    ("table 5 4111…") does not hide it. One unbroken run of 20 or more digits is not a
    card number and stays as it is.
    """

    def replace(run: re.Match) -> str:
        groups = [(m.start(), m.end()) for m in _GROUP.finditer(run.group(0))]
        value, out, done, i = run.group(0), [], 0, 0
        while i < len(groups):
            # windows of at most 19 digits, so a long run costs linear time
            last, window, ends = i, "", []
            while last < len(groups) and len(window) + groups[last][1] - groups[last][0] <= 19:
                window += value[groups[last][0] : groups[last][1]]
                ends.append(len(window))
                last += 1
            for j in range(last - 1, i - 1, -1):
                digits = window[: ends[j - i]]
                if len(digits) >= 13 and luhn_valid(digits):
                    start, end = groups[i][0], groups[j][1]
                    out.append(value[done:start] + f"{digits[:6]}******{digits[-4:]}")
                    done, i = end, j + 1
                    break
            else:
                i += 1
        return "".join(out) + value[done:]

    return _RUN.sub(replace, text)


def mask_phone(text: str) -> str:
    """Mask the middle four digits of mainland mobile numbers (138****5678)."""
    return _PHONE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(4)}", text)

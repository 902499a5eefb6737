"""Traditional characters and full-width forms folded for NLU, with every offset kept.

Merchants in Hong Kong, Macao and Taiwan, and anyone whose keyboard is set so, write
"POS機顯示１０００是什麼意思". The training data is in simplified characters, so each of those
characters would be a word DIET has never seen. ``fold`` maps every character on its own
(one character in, one out) to its simplified, half-width form: the tokens and the
error-code rules see "POS机显示1000是什么意思" at the same offsets, while the message itself,
which the tracker, the desk and the agent show, stays as the merchant typed it.

Per character, not per phrase (OpenCC's phrase tables would change lengths): a character
whose simplified form depends on the phrase keeps OpenCC's single-character choice.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Any, Text


@lru_cache(maxsize=1)
def _converter() -> Any:
    from opencc import OpenCC

    return OpenCC("t2s")


@lru_cache(maxsize=20_000)
def _fold_char(char: Text) -> Text:
    half = unicodedata.normalize("NFKC", char)
    if len(half) != 1:  # a ligature or a compatibility sequence: keep the character
        half = char
    simple = _converter().convert(half)
    return simple if len(simple) == 1 else half


def fold(text: Text) -> Text:
    """The text in simplified, half-width characters, exactly as long as ``text``."""
    return "".join(_fold_char(char) for char in text)

"""When two merchants' answers at the server-status step are "similar" (issue 17): they
have the same key once the words every such answer has are taken out.

A merchant for whom the server-status step did not help often says what the terminal
shows: "还是不行，屏幕显示连接主机超时 10:05", "still no - screen says HOST TIMEOUT". The key
is that message alone: NFKC (full-width letters become ASCII), case folded; card numbers,
digits, punctuation, markup and spaces dropped; and the filler of ``answer_fillers.yml`` removed
("还是不行", "屏幕显示", "still", "it says"). Many merchants in different regions, on
different models and channels, with one key are what a gateway outage looks like.

An answer that is only filler ("还是不行", "no") has no key: it tells nothing that the
region, model and channel proposals do not already count.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import FrozenSet, Optional, Pattern, Tuple

import yaml

from common.privacy import mask_card_numbers

FILLERS_FILE = Path(__file__).with_name("answer_fillers.yml")
# Longer keys are cut: the key is stored (``incident_reports.answer_key``) and is part of
# a proposal's key ("answers:连接主机超时").
MAX_KEY_CHARS = 64
# Less than this is no message: "超时" is one, "a" is not.
MIN_CJK_CHARS = 2
MIN_LATIN_CHARS = 3

_MARKUP = re.compile(r"</?[a-z][^<>]{0,200}>")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@lru_cache(maxsize=1)
def _fillers() -> Tuple[Pattern[str], FrozenSet[str]]:
    data = yaml.safe_load(FILLERS_FILE.read_text(encoding="utf-8"))
    phrases = sorted((unicodedata.normalize("NFKC", p).casefold() for p in data["zh"]), key=len, reverse=True)
    return re.compile("|".join(re.escape(p) for p in phrases)), frozenset(w.casefold() for w in data["en"])


def answer_key(answer: Optional[str]) -> Optional[str]:
    """The answer's key, or None when nothing but filler is left."""
    if not answer:
        return None
    zh_fillers, en_fillers = _fillers()
    text = unicodedata.normalize("NFKC", mask_card_numbers(answer)).casefold().replace("'", "").replace("\u2019", "")
    # Markup pasted along ("<b>…</b>") is not what the terminal shows.
    text = _MARKUP.sub(" ", text)
    text = zh_fillers.sub(" ", text)
    # Anything but a letter (digits, punctuation, the masks' *, spaces) separates words.
    words = [word for word in re.split(r"[\W\d_]+", text) if word and word not in en_fillers]
    key = " ".join(words)[:MAX_KEY_CHARS].strip()
    cjk = len(_CJK.findall(key))
    latin = sum(1 for ch in key if ch.isascii() and ch.isalpha())
    return key if cjk >= MIN_CJK_CHARS or latin >= MIN_LATIN_CHARS else None

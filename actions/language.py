"""The merchant's language as the actions see it."""

from __future__ import annotations

from typing import Mapping

from rasa_sdk import Tracker

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"


def language_of(tracker: Tracker) -> str:
    """``zh`` or ``en`` from the ``language`` slot (Chinese when unset or unexpected)."""
    language = tracker.get_slot("language")
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def pick_text(texts: Mapping[str, str], language: str) -> str:
    """The text in the wanted language, else in the other one, else empty."""
    return texts.get(language) or next((t for t in texts.values() if t), "")

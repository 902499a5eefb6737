"""The entity patterns of ``data/nlu/entities.yml``, for actions that parse free text.

NLU and the actions read the same file, so a merchant number means the same thing to
both. Patterns use digit lookarounds, not ``\\b``, to work on unsegmented Chinese.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Optional

import yaml

from actions.settings import PROJECT_ROOT

ENTITIES_FILE = PROJECT_ROOT / "data" / "nlu" / "entities.yml"


@lru_cache(maxsize=None)
def pattern(name: str, path: Path = ENTITIES_FILE) -> re.Pattern:
    """The compiled regex named ``name`` (case-insensitive, like the NLU pipeline)."""
    for item in yaml.safe_load(path.read_text(encoding="utf-8"))["nlu"]:
        if item.get("regex") == name:
            return re.compile(item["examples"].strip()[2:], re.IGNORECASE)
    raise KeyError(f"no regex {name!r} in {path}")


def find(name: str, text: Optional[str]) -> Optional[str]:
    """The first match of the named pattern in the text, if any."""
    match = pattern(name).search(text or "")
    return match.group(0) if match else None

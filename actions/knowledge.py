"""Terminal knowledge (restart / version / update steps per model) read from YAML."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import yaml

from actions.patterns import find
from common.reloading import reread_when_changed

UNKNOWN = "unknown"


def parse_version(text: str) -> Optional[Tuple[int, ...]]:
    """Extract the first dotted version number (``V2.3.1`` → ``(2, 3, 1)``) or None."""
    found = find("sw_version", text)
    if not found:
        return None
    return tuple(int(part) for part in found.lstrip("vV").split("."))


def format_version(version: Tuple[int, ...]) -> str:
    """Render a parsed version as ``2.3.1``."""
    return ".".join(str(part) for part in version)


@dataclass(frozen=True)
class TerminalModel:
    """One terminal model's steps, each a ``{"zh": ..., "en": ...}`` text."""

    key: str
    name: str
    latest_version: Optional[str]
    restart: Dict[str, str]
    version_location: Dict[str, str]
    update: Dict[str, str]


class KnowledgeBase:
    """Lookups over ``data/knowledge/terminals.yml``.

    ``model(key)`` returns the entry for a slot value, falling back to the generic
    steps for ``unknown`` or unlisted models; ``match_model(text)`` maps what a merchant
    typed or what NLU extracted ("a920", "商米P2") to a model key.
    """

    def __init__(self, data: dict) -> None:
        default = data["default"]
        self._default = TerminalModel(
            key=UNKNOWN,
            name="",
            latest_version=None,
            restart=default["restart"],
            version_location=default["version_location"],
            update=default["update"],
        )
        self._models: Dict[str, TerminalModel] = {}
        self._aliases: Dict[str, str] = {}
        for key, entry in (data.get("models") or {}).items():
            self._models[key] = TerminalModel(
                key=key,
                name=entry["name"],
                latest_version=str(entry["latest_version"]),
                restart={**default["restart"], **entry.get("restart", {})},
                version_location={
                    **default["version_location"],
                    **entry.get("version_location", {}),
                },
                update={**default["update"], **entry.get("update", {})},
            )
            for alias in [key, entry["name"], *entry.get("aliases", [])]:
                self._aliases[_normalise(alias)] = key

    @classmethod
    def from_file(cls, path: Path) -> "KnowledgeBase":
        """Load the knowledge file."""
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")))

    @property
    def model_keys(self) -> Tuple[str, ...]:
        """All known model keys, in file order."""
        return tuple(self._models)

    @property
    def aliases(self) -> Dict[str, str]:
        """Normalised alias → model key."""
        return dict(self._aliases)

    def model(self, key: Optional[str]) -> TerminalModel:
        """The entry for a model key; the generic entry for unknown keys."""
        return self._models.get(key or UNKNOWN, self._default)

    def match_model(self, text: Optional[str]) -> Optional[str]:
        """Map a model mention to its key: exact alias first, then the longest alias inside."""
        if not text:
            return None
        norm = _normalise(text)
        if norm in self._aliases:
            return self._aliases[norm]
        found = [alias for alias in self._aliases if alias and alias in norm]
        return self._aliases[max(found, key=len)] if found else None

    def version_status(self, key: Optional[str], version: Optional[str]) -> str:
        """``outdated``, ``latest`` or ``unknown`` for the merchant's version of a model."""
        latest_text = self.model(key).latest_version
        latest = parse_version(latest_text) if latest_text is not None else None
        current = parse_version(version or "")
        if latest is None or current is None:
            return UNKNOWN
        return "outdated" if current < latest else "latest"


def _normalise(text: str) -> str:
    return re.sub(r"[\s\-_]", "", text).lower()


@reread_when_changed()
def load_knowledge(path: Path) -> KnowledgeBase:
    """Load and cache the knowledge base (read again when the file changes)."""
    return KnowledgeBase.from_file(path)

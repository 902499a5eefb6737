"""The region table (``data/knowledge/regions.yml``): merchant number → region, names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from actions.patterns import find
from actions.settings import PROJECT_ROOT
from common.reloading import reread_when_changed

REGIONS_FILE = PROJECT_ROOT / "data" / "knowledge" / "regions.yml"


@dataclass(frozen=True)
class Region:
    """One province or city with its names per language."""

    code: str
    names: Dict[str, str]
    parent: Optional[str]
    aliases: Tuple[str, ...]


class RegionTable:
    """Lookups over the region table: by merchant number, by code, by what was typed."""

    def __init__(self, data: dict) -> None:
        self._prefixes = {str(k): str(v) for k, v in (data.get("merchant_number_prefixes") or {}).items()}
        self._regions: Dict[str, Region] = {}
        for code, entry in (data.get("regions") or {}).items():
            names = {lang: str(entry[lang]) for lang in ("zh", "en") if entry.get(lang)}
            self._regions[str(code)] = Region(
                code=str(code),
                names=names,
                parent=str(entry["parent"]) if entry.get("parent") else None,
                aliases=tuple(str(a) for a in entry.get("aliases") or []),
            )

    def region(self, code: Optional[str]) -> Optional[Region]:
        """The entry for a code, None for codes not in the table."""
        return self._regions.get(str(code)) if code else None

    def of_merchant_number(self, merchant_id: Optional[str]) -> Optional[str]:
        """The region code of a 15-digit merchant number (longest prefix wins)."""
        if not merchant_id or not re.fullmatch(r"\d{15}", merchant_id):
            return None
        found = [prefix for prefix in self._prefixes if merchant_id.startswith(prefix)]
        return self._prefixes[max(found, key=len)] if found else None

    def name(self, code: str, language: str) -> str:
        """The region's name in the language (the code itself when not in the table)."""
        entry = self.region(code)
        return (entry.names.get(language) or next(iter(entry.names.values()), code)) if entry else code

    def cities_of(self, codes: List[str]) -> List[str]:
        """The codes, each province followed by its listed cities, without repeats."""
        result: List[str] = []
        for code in codes:
            children = [c for c, r in self._regions.items() if r.parent == code]
            for item in [code, *children]:
                if item not in result:
                    result.append(item)
        return result

    def from_text(self, text: Optional[str]) -> Optional[str]:
        """The region a merchant typed: a merchant number, or a region's name or alias.

        The longest name found wins, so "深圳市南山区" is Shenzhen, not Guangdong."""
        if not text:
            return None
        by_number = self.of_merchant_number(find("merchant_id", text))
        if by_number:
            return by_number
        lowered = text.lower()
        found: List[Tuple[int, str]] = []
        for code, entry in self._regions.items():
            for name in (*entry.names.values(), *entry.aliases):
                if name and name.lower() in lowered:
                    found.append((len(name), code))
        return max(found)[1] if found else None


@reread_when_changed()
def load_regions(path: Path = REGIONS_FILE) -> RegionTable:
    """The region table (read again when the file changes)."""
    return RegionTable(yaml.safe_load(path.read_text(encoding="utf-8")) or {})

"""Operators edit the assistant's knowledge files from the console (issue 18).

The YAML files stay the source of truth an engineer reads and commits:
``data/knowledge/terminals.yml`` (each model's name, aliases, latest version and its restart /
version / update steps in both languages) and the merchant-number prefixes of
``data/knowledge/regions.yml``. An edit is checked as a whole, applied to the file's
round-trip form (ruamel.yaml: comments, order and quoting kept, so the diff shows only the
change) and written atomically (a temporary file in the same folder, then ``os.replace``)
under a lock, so two desk processes never interleave. The form carries the file's version
(a hash of its bytes when the page was read): an edit made on a file someone changed since
is refused, nothing is written. Readers on both sides re-read a changed file
(``common/reloading.py``): the next answer of the action server uses the edit, no restart.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from support_desk.files import locked, write_atomically
from support_desk.store import Conflict
from support_desk.validation import Invalid

LANGUAGES = ("zh", "en")
STEPS = ("restart", "version_location", "update")
MODEL_KEY = re.compile(r"[a-z][a-z0-9_]{1,39}")
VERSION = re.compile(r"\d{1,4}(?:\.\d{1,4}){1,3}")
PREFIX = re.compile(r"\d{3,7}")
MAX_STEP = 1000
MAX_ALIASES = 10


@dataclass(frozen=True)
class TerminalEntry:
    """One terminal model as the console edits it."""

    key: str
    name: str
    aliases: Tuple[str, ...]
    latest_version: str
    steps: Dict[str, Dict[str, str]]  # step -> language -> text

    def as_yaml(self) -> Dict[str, Any]:
        """The entry's mapping in terminals.yml (the version quoted: 3.10 is not the number 3.1)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "latest_version": DoubleQuotedScalarString(self.latest_version),
            **{step: dict(self.steps[step]) for step in STEPS},
        }


def _text(form: Mapping[str, Any], field: str, max_length: int) -> str:
    value = str(form.get(field) or "").strip()
    if not value:
        raise Invalid(f"{field} is required", "required", field=field)
    if len(value) > max_length:
        raise Invalid(f"{field} is longer than {max_length} characters", "too_long", field=field, max=max_length)
    if "<" in value or ">" in value or any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        # The bot sends these words to every channel: plain text only.
        raise Invalid(f"{field} must be plain text (no markup or control characters)", "plain_text", field=field)
    return value


def terminal_from_form(form: Mapping[str, Any]) -> TerminalEntry:
    """A terminal model from the console's form (or a JSON body): every field checked."""
    key = str(form.get("key") or "").strip()
    if not MODEL_KEY.fullmatch(key):
        raise Invalid("key must be 2-40 lower-case letters, digits or '_', starting with a letter", "model_key", value=key[:40])
    version = _text(form, "latest_version", 20).lstrip("vV")
    if not VERSION.fullmatch(version):
        raise Invalid(f"latest_version {version[:20]!r} must be a dotted version such as 3.2.1", "version", value=version[:20])
    aliases = tuple(dict.fromkeys(a.strip() for a in re.split(r"[,，\n]", str(form.get("aliases") or "")) if a.strip()))
    if not aliases or len(aliases) > MAX_ALIASES or any(len(a) > 40 or "<" in a or ">" in a for a in aliases):
        raise Invalid(f"aliases must be 1 to {MAX_ALIASES} names of at most 40 characters, comma-separated", "aliases", max=MAX_ALIASES)
    steps = {step: {lang: _text(form, f"{step}_{lang}", MAX_STEP) for lang in LANGUAGES} for step in STEPS}
    return TerminalEntry(key, _text(form, "name", 64), aliases, version, steps)


def file_version(path: Path) -> str:
    """The version a form carries: a hash of the file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True  # type: ignore[assignment]  # ruamel's attributes start as None
    yaml.width = 4096  # type: ignore[assignment]
    return yaml


def _write_document(path: Path, document: Any) -> None:
    out = io.StringIO()
    _yaml().dump(document, out)
    write_atomically(path, out.getvalue())


class KnowledgeFiles:
    """Reading and editing the knowledge files of one installation."""

    def __init__(self, terminals: Path, regions: Path) -> None:
        self.terminals_path = terminals
        self.regions_path = regions

    def terminals(self) -> Tuple[List[TerminalEntry], str]:
        """The terminal models in file order, and the file's version."""
        data = _yaml().load(self.terminals_path.read_text(encoding="utf-8"))
        entries = [
            TerminalEntry(
                key=str(key),
                name=str(entry["name"]),
                aliases=tuple(str(a) for a in entry.get("aliases") or ()),
                latest_version=str(entry.get("latest_version") or ""),
                steps={step: {lang: str((entry.get(step) or {}).get(lang) or "") for lang in LANGUAGES} for step in STEPS},
            )
            for key, entry in (data.get("models") or {}).items()
        ]
        return entries, file_version(self.terminals_path)

    def save_terminal(self, entry: TerminalEntry, version: str) -> Optional[Dict[str, Any]]:
        """Add or change a model; the model's previous mapping (None when new), for the audit.
        Refused (Conflict) when the file changed since ``version``; nothing is written."""
        with locked(self.terminals_path):
            if file_version(self.terminals_path) != version:
                raise Conflict("terminals.yml was changed by someone else since you opened it: reload the page and edit again")
            document = _yaml().load(self.terminals_path.read_text(encoding="utf-8"))
            models = document["models"]
            taken = {
                alias.casefold().replace(" ", ""): str(key)
                for key, other in models.items()
                if str(key) != entry.key
                for alias in [key, other.get("name", ""), *(other.get("aliases") or [])]
            }
            clash = next((a for a in (entry.key, entry.name, *entry.aliases) if taken.get(a.casefold().replace(" ", ""))), None)
            if clash is not None:
                raise Invalid(f"{clash!r} already names the model {taken[clash.casefold().replace(' ', '')]}", "alias_taken", value=clash)
            before = _plain(models[entry.key]) if entry.key in models else None
            if entry.key in models:
                _update(models[entry.key], entry.as_yaml())
            else:
                models[entry.key] = entry.as_yaml()
            _write_document(self.terminals_path, document)
        return before

    def prefixes(self) -> Tuple[Dict[str, str], Dict[str, Dict[str, Any]], str]:
        """Merchant-number prefix -> region code, the regions, and the file's version."""
        data = _yaml().load(self.regions_path.read_text(encoding="utf-8"))
        table = {str(k): str(v) for k, v in (data.get("merchant_number_prefixes") or {}).items()}
        regions = {str(k): _plain(v) for k, v in (data.get("regions") or {}).items()}
        return table, regions, file_version(self.regions_path)

    def save_prefix(self, prefix: str, region: Optional[str], version: str) -> Optional[str]:
        """Map a merchant-number prefix to a region (``None``: remove it); the region it had."""
        prefix = prefix.strip()
        if not PREFIX.fullmatch(prefix):
            raise Invalid(f"prefix {prefix[:20]!r} must be 3 to 7 digits", "prefix", value=prefix[:20])
        with locked(self.regions_path):
            if file_version(self.regions_path) != version:
                raise Conflict("regions.yml was changed by someone else since you opened it: reload the page and edit again")
            document = _yaml().load(self.regions_path.read_text(encoding="utf-8"))
            table = document["merchant_number_prefixes"]
            keys = {str(k): k for k in table}
            before = str(table[keys[prefix]]) if prefix in keys else None
            if region is None:
                if before is None:
                    raise Invalid(f"prefix {prefix} is not in the table", "prefix_unknown", value=prefix)
                del table[keys[prefix]]
            else:
                if region not in {str(k) for k in document["regions"]}:
                    raise Invalid(f"unknown region {region[:16]!r}", "unknown_region", value=region[:16])
                table[keys.get(prefix, prefix)] = region
            _write_document(self.regions_path, document)
        return before


def _update(node: Any, wanted: Mapping[str, Any]) -> None:
    """Change only what differs, in place, so the file keeps its layout (a flow list stays
    one, an unchanged text keeps its quoting) and the diff shows the edit alone."""
    for field, value in wanted.items():
        current = node.get(field)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            _update(current, value)
        elif isinstance(value, list) and isinstance(current, list):
            if [str(item) for item in current] != [str(item) for item in value]:
                current[:] = value
        elif current is None or str(current) != str(value):
            node[field] = value


def _plain(node: Any) -> Any:
    """ruamel's mappings and lists as plain ones (for JSON in the audit log)."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node if node is None or isinstance(node, (bool, int, float)) else str(node)

"""What an incident may say and whom it may cover: the checks behind ``POST /api/incidents``,
the console's incident form and the bot's link and report calls.

A scope names regions (codes of ``data/knowledge/regions.yml``, or their zh / en names),
channels, gateways and terminal models (keys of ``data/knowledge/terminals.yml`` or
their names and aliases); an empty list covers everyone. Texts go into merchants' chats:
plain text, no markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from common import incident_scope
from common.reloading import reread_when_changed

from support_desk.validation import Invalid, optional_text, parse_time, required_text

KNOWLEDGE = Path(__file__).resolve().parent.parent / "data" / "knowledge"
REGIONS_FILE = KNOWLEDGE / "regions.yml"
TERMINALS_FILE = KNOWLEDGE / "terminals.yml"
DIMENSIONS = tuple(incident_scope.DIMENSIONS)
# The channels merchants write on (the WeCom self-built app reaches staff, not merchants).
CHANNELS = ("socketio", "rest", "wecom_kf", "wechat", "telegram", "slack")
# Words for "everyone" in the legacy ``region`` field.
EVERYWHERE = ("all", "全国", "")
MAX_TEXT = 1000
MAX_VALUES = 50
_MARKUP = re.compile(r"<\s*/?\s*[A-Za-z!?][^>]*>|&#?\w+;")
_GATEWAY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class IncidentText:
    """A checked incident: its scope, texts and times."""

    scope: Dict[str, List[str]]
    message_zh: str
    message_en: str
    starts_at: Optional[datetime]
    expected_end: Optional[datetime]

    @property
    def region(self) -> str:
        """The legacy single region the bot's status step still shows."""
        return self.scope["regions"][0] if self.scope["regions"] else "all"


def plain_text(body: Dict[str, Any], key: str, max_length: int = MAX_TEXT) -> str:
    """A required text without markup (it goes into merchants' chats as it is)."""
    value = required_text(body, key, max_length)
    if _MARKUP.search(value):
        raise Invalid(f"{key} must be plain text, without HTML tags or entities", "markup", field=key)
    return value


def times(starts_at: Optional[datetime], expected_end: Optional[datetime]) -> None:
    """An expected end must come after the start."""
    if starts_at is not None and expected_end is not None and expected_end <= starts_at:
        raise Invalid("expected_end must be after starts_at", "end_before_start")


def incident_from_json(body: Dict[str, Any]) -> IncidentText:
    """``POST /api/incidents``: ``scope`` (or the legacy ``region``), ``message`` {zh, en},
    ``starts_at`` and ``expected_end`` (ISO 8601)."""
    message = body.get("message")
    if not isinstance(message, dict):
        raise Invalid("message must be an object with zh and en texts")
    scope = parse_scope(body.get("scope"), optional_text(body, "region", 64))
    starts_at, expected_end = parse_time(body, "starts_at"), parse_time(body, "expected_end")
    times(starts_at, expected_end)
    return IncidentText(scope, plain_text(message, "zh"), plain_text(message, "en"), starts_at, expected_end)


def parse_scope(raw: Any, legacy_region: Optional[str] = None) -> Dict[str, List[str]]:
    """A checked scope: every dimension a list of known values (empty: any)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise Invalid("scope must be an object with regions, channels, gateways and terminal_models lists")
    unknown = sorted(set(raw) - set(DIMENSIONS))
    if unknown:
        raise Invalid(f"scope has no dimension {unknown[0]!r}: use {', '.join(DIMENSIONS)}")
    lists: Dict[str, List[str]] = {}
    for dimension in DIMENSIONS:
        values = raw.get(dimension) or []
        if not isinstance(values, list) or len(values) > MAX_VALUES or not all(isinstance(v, str) for v in values):
            raise Invalid(f"scope.{dimension} must be a list of at most {MAX_VALUES} strings")
        lists[dimension] = [v.strip() for v in values if v.strip()]
    if legacy_region is not None and legacy_region.lower() not in EVERYWHERE and not lists["regions"]:
        lists["regions"] = [legacy_region]
    return {
        "regions": _unique(region_code(v) for v in lists["regions"]),
        "channels": _unique(_channel(v) for v in lists["channels"]),
        "gateways": _unique(_gateway(v) for v in lists["gateways"]),
        "terminal_models": _unique(terminal_model(v) for v in lists["terminal_models"]),
    }


def region_code(value: str) -> str:
    """A region code of the region table, from a code or a zh / en name (``深圳`` → 4403)."""
    table = regions()
    if value in table:
        return value
    wanted = _name_key(value)
    for code, names in table.items():
        if any(_name_key(str(names.get(lang) or "")) == wanted for lang in ("zh", "en")):
            return code
    raise Invalid(f"unknown region {value[:40]!r}: use a code or a name of data/knowledge/regions.yml", "unknown_region", value=value[:40])


def terminal_model(value: str) -> str:
    """A terminal model key of the knowledge data, from its key, name or an alias."""
    wanted = value.casefold().replace(" ", "")
    for key, names in terminal_models().items():
        if wanted in names:
            return key
    raise Invalid(
        f"unknown terminal model {value[:40]!r}: use one of {', '.join(terminal_models())}",
        "unknown_terminal_model",
        value=value[:40],
        choices=", ".join(terminal_models()),
    )


def _channel(value: str) -> str:
    if value not in CHANNELS:
        raise Invalid(
            f"unknown channel {value[:40]!r}: use one of {', '.join(CHANNELS)}",
            "unknown_channel",
            value=value[:40],
            choices=", ".join(CHANNELS),
        )
    return value


def _gateway(value: str) -> str:
    if not _GATEWAY.fullmatch(value):
        raise Invalid(f"gateway {value[:40]!r} must be a short name of letters, digits, '_', '.', '-'", "bad_gateway", value=value[:40])
    return value


def regions() -> Dict[str, Dict[str, Any]]:
    """``{code: {"zh", "en", "parent"?}}`` of the region table (read again when it changes)."""
    return _regions(REGIONS_FILE)


def terminal_models() -> Dict[str, List[str]]:
    """``{model key: [its key, name and aliases, folded]}`` of the knowledge data (read
    again when it changes: a model an operator adds is in the next incident form)."""
    return _terminal_models(TERMINALS_FILE)


@reread_when_changed()
def _regions(path: Path) -> Dict[str, Dict[str, Any]]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")).get("regions") or {})


@reread_when_changed()
def _terminal_models(path: Path) -> Dict[str, List[str]]:
    models = yaml.safe_load(path.read_text(encoding="utf-8"))["models"]
    fold = lambda text: str(text).casefold().replace(" ", "")  # noqa: E731
    return {key: [fold(key), fold(m.get("name", key)), *(fold(a) for a in m.get("aliases", []))] for key, m in models.items()}


def _name_key(name: str) -> str:
    # "深圳" and "深圳市", "Guangdong" and "guangdong province" name the same region.
    folded = name.casefold().replace(" ", "")
    for suffix in ("省", "市", "自治区", "province", "city"):
        if folded.endswith(suffix) and len(folded) > len(suffix):
            return folded[: -len(suffix)]
    return folded


def _unique(values: Any) -> List[str]:
    return list(dict.fromkeys(values))

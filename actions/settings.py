"""Action-server settings: ``actions/settings.yml`` overridden by the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import yaml

SETTINGS_FILE = Path(__file__).with_name("settings.yml")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Typed view of the settings the actions need."""

    desk_url: Optional[str]
    incident_board_url: Optional[str]
    upstream_status_url: Optional[str]
    status_timeout_seconds: float
    knowledge_file: Path
    labels_file: Path
    error_codes_file: Path
    domain_dir: Path
    outbox_file: Path
    outbox_retry_seconds: float
    desk_timeout_seconds: float
    desk_api_token: Optional[str]


def load_settings(path: Path = SETTINGS_FILE, environ: Mapping[str, str] = os.environ) -> Settings:
    """Read the YAML settings and apply environment overrides (an empty value unsets)."""
    raw: Dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}

    def pick(key: str) -> Any:
        value = environ.get(key.upper(), raw.get(key))
        return None if value in ("", None) else value

    def project_path(key: str, default: Optional[str] = None) -> Path:
        given = pick(key) or default
        if given is None:
            raise ValueError(f"actions/settings.yml: {key} is not set")
        value = Path(given)
        return value if value.is_absolute() else PROJECT_ROOT / value

    desk_url = (pick("desk_url") or "").rstrip("/") or None
    # Unset: the board of the desk the escalations go to (one address to configure in a
    # deployment); INCIDENT_BOARD_URL="" turns the board off.
    board = environ.get("INCIDENT_BOARD_URL", raw.get("incident_board_url"))
    if board is None and desk_url:
        board = f"{desk_url}/api/incidents"
    return Settings(
        desk_url=desk_url,
        incident_board_url=board or None,
        upstream_status_url=pick("upstream_status_url"),
        status_timeout_seconds=float(pick("status_timeout_seconds") or 2.0),
        knowledge_file=project_path("knowledge_file"),
        labels_file=project_path("labels_file"),
        error_codes_file=project_path("error_codes_file", default="data/knowledge/error_codes.yml"),
        domain_dir=project_path("domain_dir", default="domain"),
        outbox_file=project_path("outbox_file"),
        outbox_retry_seconds=float(pick("outbox_retry_seconds") or 10),
        desk_timeout_seconds=float(pick("desk_timeout_seconds") or 5),
        desk_api_token=environ.get("DESK_API_TOKEN") or None,
    )


@lru_cache(maxsize=1)
def current_settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()


@lru_cache(maxsize=4)
def load_labels(path: Path) -> Dict[str, Any]:
    """The button and step labels (``data/knowledge/labels.yml``), read once."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))

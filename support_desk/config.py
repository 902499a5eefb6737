"""Desk settings: ``support_desk/settings.yml`` overridden by the environment."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import yaml

from common.hours import BUSINESS_HOURS_FILE, BusinessHours, load_reply_clock

SETTINGS_FILE = Path(__file__).with_name("settings.yml")
# Paths in the settings are relative to the repository's root, wherever the desk starts.
REPO_ROOT = Path(__file__).resolve().parent.parent


def repo_path(value: str) -> Path:
    """A settings path: absolute as given, else under the repository's root."""
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path


def in_language(texts: Dict[str, str], language: str) -> str:
    """The wording for the merchant's language (Chinese when there is none for it)."""
    return texts.get(language) or texts["zh"]


@dataclass(frozen=True)
class TrainingSettings:
    """Retraining from the console (``support_desk.training``): commands as argument lists
    ("python" is the desk's interpreter), paths relative to the project folder."""

    command: Tuple[str, ...] = ()
    finetune_args: Tuple[str, ...] = ()
    domain: str = "domain"
    data: str = "data"
    config: str = "config.yml"
    candidates: str = "models/candidates"
    served_model: str = "models/pos1000.tar.gz"
    score_command: Tuple[str, ...] = ()
    heldout_command: Tuple[str, ...] = ()
    stories_command: Tuple[str, ...] = ()
    # The folders the scorer reads (their hash keeps kept figures to the same sets).
    scored_sets: Tuple[str, ...] = ("tests/nlu_heldout", "tests/stories")
    # Empty: the desk's rasa_url only.
    rasa_model_urls: Tuple[str, ...] = ()
    timeout_seconds: float = 1800.0
    switch_timeout_seconds: float = 300.0
    stale_seconds: float = 120.0
    # How far below the running (and the shipped) model's a held-out macro-F1 may be.
    tolerance: float = 0.0


def _training(raw: Dict, environ: Mapping[str, str]) -> TrainingSettings:
    urls: List[str] = [u.strip().rstrip("/") for u in (environ.get("RASA_MODEL_URLS") or "").split(",") if u.strip()]
    if not urls:
        urls = [str(u).rstrip("/") for u in raw.get("rasa_model_urls") or []]
    # DESK_TRAINING_COMMAND (shell words) stands in for the trainer: a check of the API on a
    # real desk process must not start a real training.
    command = shlex.split(environ["DESK_TRAINING_COMMAND"]) if environ.get("DESK_TRAINING_COMMAND") else raw["command"]
    candidates, served_model = str(raw["candidates"]), str(raw["served_model"])
    # DESK_MODELS_DIR: the models folder the desk shares with the Rasa processes (a volume
    # in deploy/, a scratch folder in tests): the served model and the candidates live there.
    if environ.get("DESK_MODELS_DIR"):
        folder = Path(environ["DESK_MODELS_DIR"])
        candidates, served_model = str(folder / Path(candidates).name), str(folder / Path(served_model).name)
    return TrainingSettings(
        command=tuple(str(w) for w in command),
        finetune_args=tuple(str(w) for w in raw["finetune_args"]),
        domain=str(raw["domain"]),
        data=str(raw["data"]),
        config=str(raw["config"]),
        candidates=candidates,
        served_model=served_model,
        score_command=tuple(str(w) for w in raw.get("score_command") or ()),
        heldout_command=tuple(str(w) for w in raw["heldout_command"]),
        stories_command=tuple(str(w) for w in raw["stories_command"]),
        scored_sets=tuple(str(w) for w in raw.get("scored_sets") or ("tests/nlu_heldout", "tests/stories")),
        rasa_model_urls=tuple(urls),
        timeout_seconds=float(raw["timeout_seconds"]),
        switch_timeout_seconds=float(raw["switch_timeout_seconds"]),
        stale_seconds=float(raw["stale_seconds"]),
        tolerance=float(raw.get("tolerance", 0.0)),
    )


@dataclass(frozen=True)
class DeskSettings:
    """Everything the desk needs to run."""

    host: str
    port: int
    database_url: str
    rasa_url: str
    rasa_token: Optional[str]
    api_token: Optional[str]
    secret_key: Optional[str]
    business_hours: BusinessHours
    first_reply_minutes: int
    sla_minutes: Dict[str, int] = field(default_factory=dict)
    max_body_bytes: int = 262144
    closing_message: Dict[str, str] = field(default_factory=dict)
    agent_joined_message: Dict[str, str] = field(default_factory=dict)
    satisfaction_question: Dict[str, str] = field(default_factory=dict)
    handback_message: Dict[str, str] = field(default_factory=dict)
    idle_reminder_minutes: int = 10
    public_rasa_url: str = "http://127.0.0.1:5005"
    delivery_retry_seconds: float = 10.0
    # Redis pub/sub shared by several desk processes (live consoles); None: one process.
    redis_url: Optional[str] = None
    # A terminal SN with this many cases within the window is flagged as a repeat.
    repeat_cases: int = 3
    repeat_days: int = 7
    # Pictures merchants send during a handoff (``POST /api/channel/attachments``).
    attachment_max_bytes: int = 2 * 1024 * 1024
    attachment_types: Tuple[str, ...] = ("image/jpeg", "image/png", "image/gif", "image/webp")
    # Rows of channel reports seen (``POST /api/channel/reports``) are kept this long, and
    # each desk process prunes the older ones at most once per ``report_prune_minutes``.
    report_retention_days: float = 14.0
    report_prune_minutes: float = 60.0
    # Incidents: when reports make a proposal, how the "it is over" messages go out.
    incident_threshold: int = 20
    incident_window_minutes: int = 10
    notice_concurrency: int = 8
    notice_recheck_seconds: float = 15.0
    incident_over_message: Dict[str, str] = field(default_factory=dict)
    # The NLU inbox: messages under this confidence are listed; where labels are written,
    # the training data they are compared with, the held-out sets they may not come from,
    # and the domain whose intents they may name.
    nlu_threshold: float = 0.6
    nlu_reviewed_file: Path = REPO_ROOT / "data" / "nlu" / "reviewed.yml"
    nlu_training_dir: Path = REPO_ROOT / "data" / "nlu"
    nlu_heldout_dir: Path = REPO_ROOT / "tests" / "nlu_heldout"
    nlu_domain_dir: Path = REPO_ROOT / "domain"
    training: TrainingSettings = field(default_factory=TrainingSettings)

    @property
    def model_urls(self) -> Tuple[str, ...]:
        """The Rasa processes a new model is switched in on (all or none)."""
        return self.training.rasa_model_urls or (self.rasa_url,)


def load_settings(
    path: Path = SETTINGS_FILE,
    environ: Mapping[str, str] = os.environ,
    business_hours_file: Path = BUSINESS_HOURS_FILE,
) -> DeskSettings:
    """Read the YAML settings (and the shared business hours) and apply the environment."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    clock = load_reply_clock(business_hours_file)
    return DeskSettings(
        host=environ.get("DESK_HOST", raw["host"]),
        port=int(environ.get("DESK_PORT", raw["port"])),
        database_url=environ.get("DESK_DATABASE_URL") or raw["database_url"],
        rasa_url=(environ.get("RASA_URL") or raw["rasa_url"]).rstrip("/"),
        rasa_token=environ.get("RASA_AUTH_TOKEN") or None,
        api_token=environ.get("DESK_API_TOKEN") or None,
        secret_key=environ.get("DESK_SECRET_KEY") or None,
        business_hours=clock.hours,
        first_reply_minutes=clock.first_reply_minutes,
        sla_minutes={k: int(v) for k, v in raw["sla_minutes"].items()},
        max_body_bytes=int(raw["max_body_bytes"]),
        closing_message=dict(raw["closing_message"]),
        agent_joined_message=dict(raw["agent_joined_message"]),
        satisfaction_question=dict(raw["satisfaction_question"]),
        handback_message=dict(raw["handback_message"]),
        idle_reminder_minutes=int(raw["idle_reminder_minutes"]),
        public_rasa_url=(environ.get("RASA_PUBLIC_URL") or raw["public_rasa_url"]).rstrip("/"),
        delivery_retry_seconds=float(raw["delivery_retry_seconds"]),
        redis_url=environ.get("DESK_REDIS_URL") or None,
        repeat_cases=int(raw["repeat_flag"]["cases"]),
        repeat_days=int(raw["repeat_flag"]["days"]),
        attachment_max_bytes=int(raw["attachments"]["max_bytes"]),
        attachment_types=tuple(str(kind) for kind in raw["attachments"]["content_types"]),
        report_retention_days=float(raw["channel_reports"]["retention_days"]),
        report_prune_minutes=float(raw["channel_reports"]["prune_every_minutes"]),
        incident_threshold=int(raw["incidents"]["proposal_threshold"]),
        incident_window_minutes=int(raw["incidents"]["proposal_window_minutes"]),
        notice_concurrency=int(raw["incidents"]["send_concurrency"]),
        notice_recheck_seconds=float(raw["incidents"]["recheck_seconds"]),
        incident_over_message=dict(raw["incidents"]["over_message"]),
        nlu_threshold=float(raw["nlu_inbox"]["confidence_threshold"]),
        nlu_reviewed_file=repo_path(environ.get("NLU_REVIEWED_FILE") or raw["nlu_inbox"]["reviewed_file"]),
        nlu_training_dir=repo_path(raw["nlu_inbox"]["training_dir"]),
        nlu_heldout_dir=repo_path(raw["nlu_inbox"]["heldout_dir"]),
        nlu_domain_dir=repo_path(raw["nlu_inbox"]["domain_dir"]),
        training=_training(raw["training"], environ),
    )

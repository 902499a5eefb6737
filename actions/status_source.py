"""Known-outage lookups for the diagnostics' server-status step.

Two optional sources, both plain JSON over HTTP:

* the support desk's incident board (``GET /api/incidents`` with the desk bearer
  token) → ``{"incidents": [{"id", "scope": {"regions", "channels", "gateways",
  "terminal_models"}, "region" (legacy), "message": {"zh", "en"}, "starts_at",
  "expected_end", "status", "ticket"}]}``;
* an upstream status page in the Statuspage format (``GET /api/v2/status.json``) →
  ``{"status": {"indicator": "none|minor|major|critical", "description": "..."}}``.

A source that times out, refuses the connection or answers with something else counts
as *not answered*; only a source that answered can say there is no outage.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import aiohttp

from actions.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incident:
    """A known outage, with its text per language."""

    message: Dict[str, str]
    region: Optional[str] = None
    expected_end: Optional[str] = None
    # Only the desk's incidents have these; None means the legacy shape (region only).
    id: Optional[int] = None
    scope: Optional[Dict[str, Any]] = None
    ticket: Optional[str] = None


@dataclass(frozen=True)
class StatusReport:
    """What the sources said: ``answered`` is False when no source could be asked."""

    answered: bool
    incidents: List[Incident] = field(default_factory=list)


class StatusSource:
    """Asks the configured status sources whether a known outage explains error 1000.

    Build it from the settings and ``await source.check()``; it never raises for a
    network fault, it reports ``answered=False`` instead.
    """

    def __init__(self, settings: Settings) -> None:
        self._board_url = settings.incident_board_url
        self._upstream_url = settings.upstream_status_url
        self._timeout = aiohttp.ClientTimeout(total=settings.status_timeout_seconds)
        self._headers = {"Authorization": f"Bearer {settings.desk_api_token}"} if settings.desk_api_token else {}

    async def check(self) -> StatusReport:
        """Ask every configured source concurrently and merge their answers."""
        lookups = []
        if self._board_url:
            lookups.append(self._ask(self._board_url, self._headers, _board_incidents))
        if self._upstream_url:
            lookups.append(self._ask(self._upstream_url, {}, _statuspage_incidents))
        if not lookups:
            return StatusReport(answered=False)
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            results = await asyncio.gather(*(lookup(session) for lookup in lookups))
        answers = [incidents for incidents in results if incidents is not None]
        return StatusReport(
            answered=bool(answers),
            incidents=[incident for incidents in answers for incident in incidents],
        )

    def _ask(self, url: str, headers: Dict[str, str], parse):  # noqa: ANN001
        async def lookup(session: aiohttp.ClientSession) -> Optional[List[Incident]]:
            try:
                async with session.get(url, headers=headers) as response:
                    if response.status != 200:
                        logger.warning("status source %s answered %s", url, response.status)
                        return None
                    return parse(await response.json(content_type=None))
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                logger.warning("status source %s not answering: %r", url, error)
                return None

        return lookup


def _board_incidents(payload: Any) -> Optional[List[Incident]]:
    """Active incidents from the desk's incident board, None if the shape is wrong."""
    if not isinstance(payload, dict) or not isinstance(payload.get("incidents"), list):
        return None
    incidents = []
    for item in payload["incidents"]:
        if not isinstance(item, dict) or item.get("status", "active") != "active":
            continue
        message = item.get("message")
        if not isinstance(message, dict) or not any(message.values()):
            continue
        scope = item.get("scope")
        incidents.append(
            Incident(
                message={lang: str(text) for lang, text in message.items() if text},
                region=item.get("region"),
                expected_end=item.get("expected_end"),
                id=item["id"] if isinstance(item.get("id"), int) else None,
                scope=scope if isinstance(scope, dict) else None,
                ticket=item.get("ticket") if isinstance(item.get("ticket"), str) else None,
            )
        )
    return incidents


def _statuspage_incidents(payload: Any) -> Optional[List[Incident]]:
    """An incident when a Statuspage-format indicator is not ``none``."""
    status = payload.get("status") if isinstance(payload, dict) else None
    if not isinstance(status, dict) or "indicator" not in status:
        return None
    if status["indicator"] == "none":
        return []
    description = str(status.get("description") or status["indicator"])
    return [Incident(message={"zh": description, "en": description})]

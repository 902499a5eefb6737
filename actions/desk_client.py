"""The support desk's API as the action server uses it (one small class)."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

import aiohttp

from actions.settings import Settings


class DeskUnavailable(Exception):
    """The desk could not be reached or did not answer as expected."""


class DeskRejected(Exception):
    """The desk refused the request (4xx): retrying the same request cannot help."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class DeskClient:
    """Creates escalations and looks tickets up, with the desk bearer token."""

    def __init__(self, settings: Settings, timeout: Optional[float] = None) -> None:
        if not settings.desk_url:
            raise DeskUnavailable("no desk_url configured")
        self._base = settings.desk_url
        self._headers = {"Authorization": f"Bearer {settings.desk_api_token or ''}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout or settings.desk_timeout_seconds)

    async def create_escalation(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        """POST /api/escalations; the desk returns the same case for a repeated ticket."""
        return await self._request("POST", "/api/escalations", json=payload)

    async def record_outcome(self, outcome: Dict[str, Any]) -> None:
        """POST /api/outcomes: how a guided diagnostics ended (for the desk's stats)."""
        await self._request("POST", "/api/outcomes", json=outcome)

    async def rate_bot(self, sender_id: str, rating: int) -> None:
        """POST /api/outcomes/rating: the merchant's 1–5 for the bot after a fixed terminal."""
        await self._request("POST", "/api/outcomes/rating", json={"sender_id": sender_id, "rating": rating})

    async def find_escalations(
        self,
        ticket: Optional[str] = None,
        sender_id: Optional[str] = None,
        status: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """GET /api/escalations filtered by ticket, conversation or status, newest first."""
        params = {k: v for k, v in (("ticket", ticket), ("sender_id", sender_id), ("status", status)) if v}
        body = await self._request("GET", "/api/escalations", params=params)
        return body.get("escalations") or []

    async def rate_escalation(self, escalation_id: Any, rating: int) -> Dict[str, Any]:
        """POST /api/escalations/{id}/satisfaction: the merchant's 1–5 for the agent."""
        return await self._request("POST", f"/api/escalations/{escalation_id}/satisfaction", json={"rating": rating})

    async def link_incident(self, incident_id: int, merchant: Dict[str, Any]) -> Dict[str, Any]:
        """POST /api/incidents/{id}/merchants: this merchant joins the incident's case.

        Idempotent per sender; a 404 (incident no longer active) raises ``DeskRejected``."""
        return await self._request("POST", f"/api/incidents/{incident_id}/merchants", json=merchant)

    async def report_incident(self, report: Dict[str, Any]) -> None:
        """POST /api/incidents/reports: evidence the desk groups into proposed incidents."""
        await self._request("POST", "/api/incidents/reports", json=report)

    async def _request(self, method: str, path: str, **kwargs: Any) -> Dict[str, Any]:
        try:
            async with aiohttp.ClientSession(timeout=self._timeout, headers=self._headers) as session:
                async with session.request(method, self._base + path, **kwargs) as response:
                    body = await response.json(content_type=None)
                    if 400 <= response.status < 500 and response.status not in (408, 429):
                        raise DeskRejected(f"desk answered {response.status}: {body}", response.status)
                    if response.status >= 300 or not isinstance(body, dict):
                        raise DeskUnavailable(f"desk answered {response.status}")
                    return body
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
            raise DeskUnavailable(f"desk not reachable: {error.__class__.__name__}") from error

"""Delivers agent replies and the resume into the merchant's conversation via Rasa.

Rasa's HTTP API (``--enable-api --auth-token``): ``POST /conversations/{id}/tracker/
events?output_channel=latest&execute_side_effects=true`` appends events and sends bot
messages out through the channel the merchant last wrote on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional
from urllib.parse import quote

import aiohttp

logger = logging.getLogger(__name__)


# What a URL path segment may hold as it is (RFC 3986 "pchar"): Rasa's server (Sanic) does
# not decode path parameters, so "wk…:wm…" (a 微信客服 sender) must keep its ":" — "%3A"
# would name another, empty conversation. Anything else is still encoded.
PATH_SAFE = ":@!$&'()*+,;="


def conversation_path(sender_id: str) -> str:
    """The sender id as the conversation's segment of a Rasa API path."""
    return quote(sender_id, safe=PATH_SAFE)


class RasaUnavailable(Exception):
    """Rasa could not be reached or refused the events."""


class RasaClient:
    """A small client for the two Rasa HTTP API calls the desk needs."""

    def __init__(self, base_url: str, token: Optional[str], timeout: float = 5.0) -> None:
        self._base = base_url.rstrip("/")
        self._params = {"token": token} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # One connection pool for the desk's life: made on the first call (inside the
        # running loop), closed on the app's cleanup.
        self._session: Optional[aiohttp.ClientSession] = None

    async def close(self) -> None:
        """Close the connection pool (the desk is shutting down)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def append_events(self, sender_id: str, events: List[Dict[str, Any]]) -> None:
        """Append events to a conversation and send bot messages to its latest channel."""
        url = f"{self._base}/conversations/{conversation_path(sender_id)}/tracker/events"
        # Without execute_side_effects Rasa stores bot events but sends nothing out.
        params = {**self._params, "output_channel": "latest", "execute_side_effects": "true"}
        await self._request("POST", url, params, events)

    async def tracker_events(self, sender_id: str) -> List[Dict[str, Any]]:
        """All events of a conversation."""
        url = f"{self._base}/conversations/{conversation_path(sender_id)}/tracker"
        body = await self._request("GET", url, {**self._params, "include_events": "ALL"})
        return body.get("events") or []

    async def _request(self, method: str, url: str, params: Dict[str, str], body: Any = None) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(method, url, params=params, json=body) as response:
                if response.status >= 300:
                    raise RasaUnavailable(f"Rasa answered {response.status}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
            raise RasaUnavailable(f"Rasa not reachable: {error.__class__.__name__}") from error

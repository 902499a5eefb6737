"""Sends the "it is over" messages of closed incidents, each merchant once.

Each message goes the way agent replies go: a ``bot`` event appended to the merchant's
conversation through Rasa's HTTP API, carrying ``metadata.desk_message_id`` so the
reporting channels (微信客服, Official Account) tell the desk whether it went out or is
held (48-hour window).

At most once, resumed: the merchant's row turns ``sending`` in a committed transaction
before Rasa is called, and ``sent`` after Rasa took the event. A row found ``sending``
later (the desk stopped during the call, or Rasa's answer was lost) is sent again only
after the merchant's conversation was read and holds no event with that
``desk_message_id``; while the conversation cannot be read it waits. So a restart in the
middle sends the rest and nobody twice; the one case left is Rasa storing the event
after the desk looked, which ``recheck_seconds`` (more than the Rasa client's timeout)
rules out for every request the desk itself gave up on.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, Dict, Set
from zoneinfo import ZoneInfo

from support_desk.config import DeskSettings
from support_desk.incidents import IncidentBoard, Notice
from support_desk.rasa_client import RasaClient, RasaUnavailable
from support_desk.store import utcnow

logger = logging.getLogger(__name__)


def notice_texts(settings: DeskSettings, incident: Dict[str, Any]) -> Dict[str, str]:
    """The message per language, with the interruption window in the agents' time zone
    ("10:05–10:40"; with the dates when it spans midnight)."""
    zone = ZoneInfo(settings.business_hours.timezone)
    start = datetime.fromisoformat(incident["starts_at"]).astimezone(zone)
    end = (datetime.fromisoformat(incident["ended_at"]) if incident.get("ended_at") else utcnow()).astimezone(zone)
    style = "%H:%M" if start.date() == end.date() else "%m-%d %H:%M"
    window = f"{start.strftime(style)}–{end.strftime(style)}"
    return {lang: text.format(window=window) for lang, text in settings.incident_over_message.items()}


class IncidentNotices:
    """Rounds of sending: after a close, on the desk's start (resuming) and periodically."""

    def __init__(self, board: IncidentBoard, rasa: RasaClient, concurrency: int, recheck_seconds: float) -> None:
        self.board = board
        self.rasa = rasa
        self.recheck = timedelta(seconds=recheck_seconds)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._round = asyncio.Lock()
        self._tasks: Set[asyncio.Task] = set()

    async def send_due(self) -> int:
        """Send every notice that is due; how many reached Rasa in this round."""
        async with self._round:
            # Rechecked: attempts started before this round (minus recheck_seconds); an
            # attempt of this round is never due again in it, so the round ends.
            recheck_before = utcnow() - self.recheck
            sent = 0
            while True:
                due = await self.board.due_notices(recheck_before)
                if not due:
                    return sent
                sent += sum(await asyncio.gather(*(self._send(notice) for notice in due)))

    def kick(self) -> None:
        """Start a round now without waiting for it (an incident was just closed)."""
        task = asyncio.get_running_loop().create_task(self.send_due())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait for the rounds started by ``kick``."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_forever(self, interval: float) -> None:
        """A round now (a desk restarted in the middle resumes) and every ``interval`` s."""
        while True:
            try:
                await self.send_due()
            except Exception:  # noqa: BLE001 - a retry loop must survive a bad round
                logger.exception("incident notice round failed")
            await asyncio.sleep(interval)

    async def _send(self, notice: Notice) -> int:
        async with self._slots:
            if not await self.board.start_sending(notice):
                return 0  # another round or desk process has it
            try:
                if notice.state == "sending" and await self._arrived(notice):
                    await self.board.sent(notice)
                    return 0
                await self.rasa.append_events(
                    notice.sender_id,
                    [
                        {
                            "event": "bot",
                            "text": notice.text,
                            "metadata": {"desk_message_id": notice.message_id, "incident_id": notice.incident_id},
                        }
                    ],
                )
            except RasaUnavailable as error:
                # Whether Rasa took it is not known (a timeout): it stays "sending", and the
                # next attempt after recheck_seconds looks in the conversation first.
                await self.board.attempt_failed(notice, str(error))
                return 0
            await self.board.sent(notice)
            return 1

    async def _arrived(self, notice: Notice) -> bool:
        events = await self.rasa.tracker_events(notice.sender_id)
        return any(e.get("event") == "bot" and (e.get("metadata") or {}).get("desk_message_id") == notice.message_id for e in events)

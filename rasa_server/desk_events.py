"""Rasa's event broker for the support desk: what is said in a conversation, pushed.

Named in ``endpoints.yml`` (``event_broker: type: rasa_server.desk_events.DeskEventBroker``).
Rasa calls ``publish`` for every new tracker event while it saves a conversation; this
broker keeps only what the desk needs (user and bot messages, ``pause`` / ``resume``,
the ``ticket`` slot), turns a button click into the button's title, marks a voice
message "🎤 " (``heard_text``), and hands the rest to
a background task that POSTs batches to the desk's ``/api/rasa/events``.

Rasa's message handling never waits for the desk and never fails because of it: a desk
that is down gets the same batch again, in order, with a growing pause between tries;
at most ``max_pending`` events wait (the oldest are dropped past that, and the log says
how many). The desk reads the conversation's tracker when an agent opens the case, which
brings back anything dropped.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from asyncio import AbstractEventLoop
from typing import Any, Deque, Dict, List, Optional, Text

import aiohttp
from rasa.core.brokers.broker import EventBroker
from rasa.utils.endpoints import EndpointConfig

from support_desk.transcript_text import buttons_of, heard_text, spoken_text

logger = logging.getLogger(__name__)

Event = Dict[Text, Any]

BATCH_SIZE = 200
MAX_PENDING = 10_000
# Conversations whose last offered buttons are remembered (to read the next click).
BUTTON_MEMORY = 10_000
RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 0.5, 10.0


class DeskEventBroker(EventBroker):
    """Forwards the conversation events the desk needs, batched, in a background task."""

    def __init__(
        self,
        url: Optional[str],
        token: Optional[str],
        batch_size: int = BATCH_SIZE,
        max_pending: int = MAX_PENDING,
        retry_first_seconds: float = RETRY_FIRST_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.url = f"{url.rstrip('/')}/api/rasa/events" if url else None
        self.token = token
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.retry_first_seconds = retry_first_seconds
        self.retry_max_seconds = retry_max_seconds
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        # (sequence number, event): a batch in flight is removed by number once taken,
        # whatever was dropped from the front meanwhile.
        self.pending: Deque[tuple[int, Event]] = collections.deque()
        self._sequence = 0
        self.dropped = 0
        self._buttons: "collections.OrderedDict[str, List[Dict[str, Any]]]" = collections.OrderedDict()
        self._wake = asyncio.Event()
        self._task: Optional["asyncio.Task[None]"] = None
        self._session: Optional[aiohttp.ClientSession] = None
        if not self.url:
            logger.warning("DESK_URL is empty: conversation events are not pushed to the desk")

    @classmethod
    async def from_endpoint_config(
        cls, broker_config: EndpointConfig, event_loop: Optional[AbstractEventLoop] = None
    ) -> "DeskEventBroker":
        """The broker of ``endpoints.yml``: ``url`` (the desk's address) and ``token``."""
        options = broker_config.kwargs
        return cls(
            url=broker_config.url,
            token=broker_config.token,
            batch_size=int(options.get("batch_size", BATCH_SIZE)),
            max_pending=int(options.get("max_pending", MAX_PENDING)),
        )

    def publish(self, event: Event) -> None:
        """Queue one tracker event for the desk if it is one the desk reads (never blocks)."""
        if not self.url:
            return
        kept = self._for_desk(event)
        if kept is None:
            return
        if len(self.pending) >= self.max_pending:
            self.pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "desk unreachable and %d events waiting: %d oldest dropped so far "
                    "(the desk re-reads those conversations when a case is opened)",
                    self.max_pending, self.dropped,
                )
        self._sequence += 1
        self.pending.append((self._sequence, kept))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send_forever())

    def _for_desk(self, event: Event) -> Optional[Event]:
        """The part of a Rasa event the desk uses, or None for events it does not need."""
        kind = event.get("event")
        sender = event.get("sender_id")
        if not isinstance(sender, str):
            return None
        base = {"sender_id": sender, "event": kind, "timestamp": event.get("timestamp")}
        if kind == "bot":
            self._remember_buttons(sender, buttons_of(event))
            metadata = event.get("metadata") or {}
            if not event.get("text") or metadata.get("desk_message_id") is not None:
                return None  # the desk's own replies are the desk's already
            return {**base, "text": event["text"]}
        if kind == "user":
            if not event.get("text"):
                return None
            words = spoken_text(event["text"], self._buttons.get(sender, ()))
            return None if words is None else {**base, "text": heard_text(event, words)}
        if kind in ("pause", "resume"):
            return base
        if kind == "slot" and event.get("name") == "ticket":
            return {**base, "name": "ticket", "value": event.get("value")}
        return None

    def _remember_buttons(self, sender: str, buttons: List[Dict[str, Any]]) -> None:
        self._buttons[sender] = buttons
        self._buttons.move_to_end(sender)
        while len(self._buttons) > BUTTON_MEMORY:
            self._buttons.popitem(last=False)

    async def _send_forever(self) -> None:
        """Send what is pending, oldest first; retry a failed batch until it is taken."""
        pause = self.retry_first_seconds
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self.pending[i] for i in range(min(self.batch_size, len(self.pending)))]
            if await self._post([event for _, event in batch]):
                last = batch[-1][0]
                while self.pending and self.pending[0][0] <= last:
                    self.pending.popleft()
                pause = self.retry_first_seconds
                continue
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.retry_max_seconds)

    async def _post(self, batch: List[Event]) -> bool:
        """One POST; True when the desk took the batch (or refused it for good)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with self._session.post(self.url, json={"events": batch}, headers=headers) as response:
                if response.status < 300:
                    return True
                body = (await response.text())[:200]
                if 400 <= response.status < 500 and response.status not in (401, 403, 408, 429):
                    # The same batch would be refused again: skip it, say so.
                    logger.error("desk refused %d events (%d %s): dropped", len(batch), response.status, body)
                    return True
                logger.warning("desk answered %d to %d events, retrying", response.status, len(batch))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as problem:
            logger.info("desk not reachable (%s), %d events waiting", problem.__class__.__name__, len(self.pending))
        return False

    def is_ready(self) -> bool:
        """Always ready: events wait in memory until the desk takes them."""
        return True

    async def close(self, flush_seconds: float = 2.0) -> None:
        """Send what is pending for up to ``flush_seconds``, then stop."""
        if self._task is not None and not self._task.done():
            deadline = asyncio.get_running_loop().time() + flush_seconds
            while self.pending and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.pending:
            logger.warning("%d events not sent to the desk at shutdown", len(self.pending))
        if self._session is not None:
            await self._session.close()

"""Rasa's event broker for the support desk: what is said in a conversation, pushed.

Named in ``endpoints.yml`` (``event_broker: type: rasa_server.desk_events.DeskEventBroker``).
Rasa calls ``publish`` for every new tracker event while it saves a conversation; this
broker keeps only what the desk needs (user and bot messages, ``pause`` / ``resume``,
the ``ticket`` slot), turns a button click into the button's title, marks a voice
message "🎤 " (``heard_text``), adds to each user message what NLU made of it (``nlu``:
intent, confidence, the top of the ranking, the FAQ key; for the desk's NLU inbox) and to
a bot message the response it came from (``utter_action``: the clarifying question), and
hands the rest to
a background task that POSTs batches to the desk's ``/api/rasa/events``
(``rasa_server.desk_post.BatchedPoster``: in order, retried while the desk is down,
bounded). The desk reads the conversation's tracker when an agent opens the case, which
brings back anything dropped.
"""

from __future__ import annotations

import collections
import logging
from asyncio import AbstractEventLoop
from typing import Any, Deque, Dict, List, Optional, Text

from rasa.core.brokers.broker import EventBroker
from rasa.utils.endpoints import EndpointConfig

from rasa_server.desk_post import BATCH_SIZE, MAX_PENDING, RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS, BatchedPoster
from common.transcript_text import buttons_of, heard_text, is_payload, spoken_text

logger = logging.getLogger(__name__)

Event = Dict[Text, Any]

# Conversations whose last offered buttons are remembered (to read the next click).
BUTTON_MEMORY = 10_000
# Intents of the ranking the desk's NLU inbox shows beside a message.
RANKING_SHOWN = 3


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
        self.poster = BatchedPoster(
            self.url,
            token,
            "events",
            batch_size=batch_size,
            max_pending=max_pending,
            retry_first_seconds=retry_first_seconds,
            retry_max_seconds=retry_max_seconds,
            timeout_seconds=timeout_seconds,
            what="events (the desk re-reads those conversations when a case is opened)",
        )
        self._buttons: "collections.OrderedDict[str, List[Dict[str, Any]]]" = collections.OrderedDict()
        if not self.url:
            logger.warning("DESK_URL is empty: conversation events are not pushed to the desk")

    @property
    def pending(self) -> Deque[tuple[int, Event]]:
        """The events waiting for the desk, oldest first."""
        return self.poster.pending

    @property
    def dropped(self) -> int:
        """How many events were dropped because too many were waiting."""
        return self.poster.dropped

    @classmethod
    async def from_endpoint_config(cls, broker_config: EndpointConfig, event_loop: Optional[AbstractEventLoop] = None) -> "DeskEventBroker":
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
        if kept is not None:
            self.poster.put(kept)

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
            response = metadata.get("utter_action")
            return {**base, "text": event["text"], **({"utter_action": response} if isinstance(response, str) else {})}
        if kind == "user":
            if not event.get("text"):
                return None
            words = spoken_text(event["text"], self._buttons.get(sender, ()))
            if words is None:
                return None
            return {**base, "text": heard_text(event, words), "nlu": nlu_result(event.get("parse_data"), is_payload(event["text"]))}
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

    def is_ready(self) -> bool:
        """Always ready: events wait in memory until the desk takes them."""
        return True

    async def close(self, flush_seconds: float = 2.0) -> None:
        """Send what is pending for up to ``flush_seconds``, then stop."""
        await self.poster.close(flush_seconds)


def nlu_result(parse_data: Any, clicked: bool) -> Dict[str, Any]:
    """The part of Rasa's parse result the desk's NLU inbox reads: the intent and its
    confidence, the top of the ranking, the response selector's FAQ key, the language
    entity, and whether the message was a button's payload (``clicked``: not typed)."""
    data = parse_data if isinstance(parse_data, dict) else {}
    given = data.get("intent")
    intent: Dict[str, Any] = given if isinstance(given, dict) else {}
    ranking = [
        {"name": item.get("name"), "confidence": _confidence(item.get("confidence"))}
        for item in (data.get("intent_ranking") or [])[:RANKING_SHOWN]
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]
    selected = ((data.get("response_selector") or {}).get("faq") or {}).get("response") or {}
    faq = selected.get("intent_response_key") if isinstance(selected, dict) else None
    language = next(
        (e.get("value") for e in data.get("entities") or [] if isinstance(e, dict) and e.get("entity") == "language"),
        None,
    )
    return {
        "intent": intent.get("name") if isinstance(intent.get("name"), str) else None,
        "confidence": _confidence(intent.get("confidence")),
        "ranking": ranking,
        "faq": faq if isinstance(faq, str) else None,
        "language": language if language in ("zh", "en") else None,
        "clicked": clicked,
    }


def _confidence(value: Any) -> Optional[float]:
    # numpy floats and plain numbers alike, rounded: the desk shows two decimals.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
    return round(float(value), 4)

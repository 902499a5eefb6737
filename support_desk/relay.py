"""Moves messages between the desk and the merchant's Rasa conversation.

* Agent replies and the closing or hand-back message (with Rasa's ``resume`` event and,
  after a closing, the satisfaction question) go out in the order they were written; one
  that Rasa does not take stays queued with its error and is retried, so nothing an agent
  wrote is lost. Every bot event carries ``metadata.desk_message_id``: Rasa hands it to
  the output channel, which reports the message's fate by that id. A case whose WeCom
  session ended queues a bare ``resume`` the same way.
* What is said during the handoff (the merchant's messages, the bot's ticket message)
  is copied from the Rasa tracker into the case once per message, in words: the case
  page's reconciliation when it opens; Rasa's event broker pushes it as it happens
  (``support_desk.events_in``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from support_desk.rasa_client import RasaClient, RasaUnavailable
from support_desk.store import DeskStore, aware, incident_id_of
from common.transcript_text import readable_messages

logger = logging.getLogger(__name__)


class RasaRelay:
    """Delivery of desk messages into Rasa and collection of merchant messages."""

    def __init__(self, store: DeskStore, rasa: RasaClient) -> None:
        self.store = store
        self.rasa = rasa
        # One delivery at a time per case: an agent's reply and the retry loop must not
        # both pick the same queued message and send it twice, and a case's messages go
        # out in order. Different cases do not wait for each other (50 agents replying at
        # once each wait for their own Rasa round trip, not for 49 others).
        self._case_locks: Dict[int, asyncio.Lock] = {}
        self._lock_users: Dict[int, int] = {}

    async def deliver_pending(self, escalation_id: Optional[int] = None) -> Dict[int, str]:
        """Send queued messages (of one case, or of all); ``{message_id: error}`` for those
        still queued."""
        if escalation_id is not None:
            return await self._deliver_case(escalation_id)
        failed: Dict[int, str] = {}
        for case in sorted({m["escalation_id"] for m in await self.store.undelivered()}):
            failed.update(await self._deliver_case(case))
        return failed

    async def _deliver_case(self, escalation_id: int) -> Dict[int, str]:
        lock = self._case_locks.setdefault(escalation_id, asyncio.Lock())
        self._lock_users[escalation_id] = self._lock_users.get(escalation_id, 0) + 1
        try:
            async with lock:
                return await self._deliver_pending(escalation_id)
        finally:
            # The lock is forgotten once nobody holds or waits for it (bounded memory).
            self._lock_users[escalation_id] -= 1
            if not self._lock_users[escalation_id]:
                del self._lock_users[escalation_id], self._case_locks[escalation_id]

    async def _deliver_pending(self, escalation_id: int) -> Dict[int, str]:
        failed: Dict[int, str] = {}
        blocked: set = set()
        queued = await self.store.undelivered(escalation_id)
        riders = _riders(queued)
        for message in queued:
            case = message["escalation_id"]
            if message["id"] in riders.values():
                continue  # goes out with the closing message before it
            if case in blocked:
                # Keep the merchant's view in order: nothing overtakes a failed message.
                failed[message["id"]] = "waiting for an earlier message"
                continue
            rider = next((m for m in queued if m["id"] == riders.get(message["id"])), None)
            also = [rider["id"]] if rider else []
            try:
                if message.get("delivery_error") and await self._arrived(message):
                    await self.store.mark_delivery(message["id"], None, *also)
                    continue
                await self.rasa.append_events(message["sender_id"], rasa_events(message, rider))
            except RasaUnavailable as error:
                failed[message["id"]] = str(error)
                failed.update({extra: str(error) for extra in also})
                blocked.add(case)
                await self.store.mark_delivery(message["id"], str(error), *also)
                continue
            await self.store.mark_delivery(message["id"], None, *also)
        return failed

    async def _arrived(self, message: Dict[str, Any]) -> bool:
        """Did an earlier attempt reach the conversation although it reported a failure?"""
        events = await self.rasa.tracker_events(message["sender_id"])
        return any(e.get("event") == "bot" and (e.get("metadata") or {}).get("desk_message_id") == message["id"] for e in events)

    async def collect_merchant_messages(self, escalation: Dict[str, Any]) -> int:
        """Copy what was said while the case paused the bot (the merchant's messages, the
        bot's ticket message); 0 when Rasa is away.

        The span starts where the escalation set its ticket in the conversation (the
        handoff; the case's ``created_at`` when there is none, e.g. a case made through
        the API) and ends at the first ``resume`` after it: what the merchant writes once
        the bot has taken over again belongs to the bot, not to the case. So the case can
        be read again after it is resolved, and a message written just before the
        resolution is still copied in.
        """
        if incident_id_of(escalation) is not None:
            return 0  # an outage's shared case: no conversation behind it
        try:
            events = await self.rasa.tracker_events(escalation["sender_id"])
        except RasaUnavailable as error:
            logger.info("transcript not refreshed: %s", error)
            return 0
        return await self.store.add_merchant_messages(escalation["id"], paused_messages(events, escalation))

    async def run_forever(self, interval: float) -> None:
        """Retry queued messages every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.deliver_pending()
            except Exception:  # noqa: BLE001 - a retry loop must survive a bad round
                logger.exception("delivery round failed")


# Messages that end the handoff: Rasa's ``resume`` comes before them.
RESUMING_KINDS = ("closing", "handback")


def _riders(queued: List[Dict[str, Any]]) -> Dict[int, int]:
    """``{closing message id: rating question id}``: the question travels with its closing."""
    riders = {}
    for before, after in zip(queued, queued[1:]):
        if before["kind"] == "closing" and after["kind"] == "rating" and before["escalation_id"] == after["escalation_id"]:
            riders[before["id"]] = after["id"]
    return riders


def rasa_events(message: Dict[str, Any], rider: Optional[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The Rasa events that carry one desk message (and the rating question after a closing)."""
    # The desk's message id travels with the bot event: a retry after an attempt whose
    # answer was lost (Rasa slow, not down) finds it and does not send twice.
    tag = {"desk_message_id": message["id"]}
    if message["kind"] == "resume":
        # The WeCom session ended: the bot takes over without a word (the platform would
        # refuse a message now); action_listen as below.
        return [{"event": "resume"}, {"event": "action", "name": "action_listen"}]
    if message["kind"] not in RESUMING_KINDS:
        event = {"event": "bot", "text": message["text"], "metadata": {"agent": message["author"], **tag}}
        if message.get("buttons"):
            event["data"] = {"buttons": message["buttons"]}
        return [event]
    # The pause ended the bot's turn before its action_listen; without one the
    # merchant's next message would not match any rule.
    events: List[Dict[str, Any]] = [{"event": "resume"}, {"event": "bot", "text": message["text"], "metadata": tag}]
    if rider:
        events.append(
            {
                "event": "bot",
                "text": rider["text"],
                "data": {"buttons": rider["buttons"] or []},
                "metadata": {"desk_message_id": rider["id"]},
            }
        )
    events.append({"event": "action", "name": "action_listen"})
    return events


def paused_messages(events: List[Dict[str, Any]], escalation: Dict[str, Any]) -> List[Dict[str, Any]]:
    """What was said in this case's handoff, from the conversation's events, in words.

    The span starts at the action that set the case's ticket, so the bot's own ticket and
    promise message ("您的工单号是 … 前回复") is in it, and ends at the next ``resume``.
    Bot messages the desk sent itself (tagged ``desk_message_id``) are the desk's already.
    """
    start = _handoff_start(events, escalation)
    span = set()
    for event in events[start:]:
        if event.get("event") == "resume":
            break
        span.add(id(event))
    lines = []
    for event, words in readable_messages(events):
        if id(event) not in span or (event.get("metadata") or {}).get("desk_message_id") is not None:
            continue
        stamp = float(event.get("timestamp") or 0)
        lines.append(
            {
                "role": event["event"],
                "text": words,
                "source_ts": stamp,
                "at": aware(datetime.fromtimestamp(stamp, tz=timezone.utc)),
            }
        )
    return lines


def _handoff_start(events: List[Dict[str, Any]], escalation: Dict[str, Any]) -> int:
    """Index of the action that handed this case over (its ticket slot), else the first
    event after the case was created (a case made through the API)."""
    ticket = escalation.get("ticket")
    slot = next(
        (i for i, e in enumerate(events) if e.get("event") == "slot" and e.get("name") == "ticket" and ticket and e.get("value") == ticket),
        None,
    )
    if slot is None:
        since = datetime.fromisoformat(escalation["created_at"]).timestamp()
        return next((i for i, e in enumerate(events) if float(e.get("timestamp") or 0) > since), len(events))
    # Rasa stores an action's messages before the events it returned.
    return next((i for i in range(slot, -1, -1) if events[i].get("event") == "action"), slot)

"""``POST /api/rasa/events``: what Rasa's event broker pushes (``rasa_server.desk_events``).

Each event is filed with the newest case of its conversation when it belongs there: a
user or bot message written after the case was created and before it was resolved. The
desk's own replies (metadata ``desk_message_id``) are the desk's already; every message is
stored once (by its Rasa timestamp), in words and with card numbers masked. Events of
conversations without a case (the bot's own chats, most of them) are not filed with a
case; every conversation's messages are read by the NLU inbox (``support_desk.nlu_inbox``:
what the bot probably got wrong).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from support_desk.api import STORE, read_json
from support_desk.nlu_inbox import INBOX, NluInbox
from support_desk.schema import escalations
from support_desk.store import DeskStore, aware
from common.transcript_text import spoken_text
from support_desk.validation import Invalid

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
MAX_EVENTS = 1000
KINDS = ("user", "bot", "pause", "resume", "slot")


@routes.post("/api/rasa/events")
async def rasa_events(request: web.Request) -> web.Response:
    """Take a batch of conversation events from Rasa's event broker."""
    body = await read_json(request)
    events = body.get("events")
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise Invalid(f"events must be a list of at most {MAX_EVENTS} event objects")
    valid = [event for event in events if _valid(event)]
    filed = await file_events(request.app[STORE], valid, request.app.get(INBOX))
    return web.json_response({"received": len(events), "ignored": len(events) - len(valid), "filed": filed})


def _valid(event: Any) -> bool:
    if not isinstance(event, dict) or event.get("event") not in KINDS:
        return False
    sender, stamp = event.get("sender_id"), event.get("timestamp")
    if not isinstance(sender, str) or not 0 < len(sender) <= 255:
        return False
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not 0 < stamp < 1e11:
        return False
    if event["event"] in ("user", "bot"):
        text = event.get("text")
        return isinstance(text, str) and 0 < len(text) <= 100_000
    return True


async def file_events(store: DeskStore, events: List[Dict[str, Any]], inbox: Optional[NluInbox] = None) -> int:
    """Add each message to its conversation's case where it belongs, and give the batch to
    the NLU inbox (all conversations); how many messages were added to cases."""
    by_sender: Dict[str, List[Dict[str, Any]]] = {}
    for event in events:
        by_sender.setdefault(event["sender_id"], []).append(event)
    added = 0
    for sender, own in by_sender.items():
        case = await _newest_case(store, sender)
        if case is None:
            continue
        lines = [line for line in (_line(event, case) for event in own) if line is not None]
        if lines:
            added += await store.add_merchant_messages(case["id"], lines)
    if inbox is not None:
        try:
            await inbox.take_events(events)
        except (OperationalError, DBAPIError):
            raise  # the database is down: a 503, and the broker sends the batch again
        except Exception:  # noqa: BLE001 - the inbox must never hold up the cases' live transcripts
            logger.exception("NLU inbox could not read a batch of %d events", len(events))
    return added


async def _newest_case(store: DeskStore, sender: str) -> Optional[Dict[str, Any]]:
    """The newest case of a conversation, only the columns filing needs."""
    query = (
        sa.select(escalations.c.id, escalations.c.created_at, escalations.c.resolved_at)
        .where(escalations.c.sender_id == sender)
        .order_by(escalations.c.created_at.desc(), escalations.c.id.desc())
        .limit(1)
    )
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


def _line(event: Dict[str, Any], case: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The case's message for this event, or None when it is not part of the case."""
    if event["event"] not in ("user", "bot"):
        return None
    if (event.get("metadata") or {}).get("desk_message_id") is not None:
        return None
    at = datetime.fromtimestamp(float(event["timestamp"]), tz=timezone.utc)
    if at < aware(case["created_at"]):
        return None  # before the handoff: in the transcript the bot sent with the case
    if case["resolved_at"] is not None and at > aware(case["resolved_at"]):
        return None  # the bot has the conversation again
    text = event["text"] if event["event"] == "bot" else spoken_text(event["text"])
    if text is None:
        return None
    return {"role": event["event"], "text": text, "source_ts": float(event["timestamp"]), "at": at}

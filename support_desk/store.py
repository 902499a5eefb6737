"""Escalations, their messages and agents in the desk's database (incidents:
``support_desk.incidents``).

Every write is one transaction; the API layer validates input before it gets here and
the text a merchant wrote is stored with card numbers masked.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterable, List, Optional, overload

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from support_desk.live import LiveHub
from support_desk.pagination import DEFAULT_LIMIT, Cursor, Page
from common.tickets import new_ticket
from common.privacy import mask_card_numbers
from support_desk.schema import agents, canned_replies, escalations, messages, outcomes

STATUSES = ("open", "claimed", "resolved")
PRIORITIES = ("urgent", "high", "normal")
ROLES = ("user", "bot", "agent")
# What the desk sends into the merchant's chat (a note is never among them); ``resume``
# carries no words, only Rasa's resume event.
SENT_KINDS = ("reply", "notice", "closing", "handback", "rating", "resume")
# Channels whose bot messages Rasa pushes to the merchant; on the others (``rest``) a
# message waits in the conversation until the merchant's client asks for it.
PUSH_CHANNELS = ("socketio", "wecom", "wecom_kf", "wechat", "telegram", "slack")
# Channels that report what became of each message (``POST /api/channel/reports``):
# Rasa taking a message there is not the merchant getting it (quota, 48-hour window).
REPORTING_CHANNELS = ("wecom_kf", "wechat")
# claimed_by of a case a WeCom agent answers in the WeCom client ("wecom:<userid>").
WECOM_AGENT_PREFIX = "wecom:"
# The category of a case handed back to the bot without an agent's answer.
RETURNED_TO_BOT = "returned_to_bot"
# The channel of an outage's shared case (ticket INC-…, sender "incident:<id>"): no
# merchant's conversation is behind it, so nothing is sent on it; its merchants are told
# when the incident closes (support_desk.incidents).
INCIDENT_CHANNEL = "incident"


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(timezone.utc)


def to_utc(value: Optional[datetime]) -> Optional[datetime]:
    """Store every time in UTC: SQLite keeps the wall-clock time and drops the offset."""
    return value.astimezone(timezone.utc) if value is not None else None


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: Optional[datetime]) -> Optional[datetime]:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def iso(value: Optional[datetime]) -> Optional[str]:
    """ISO 8601 text of a stored time (None stays None)."""
    value = aware(value)
    return value.isoformat() if value else None


class NotFound(Exception):
    """The escalation (or incident) does not exist."""


class Conflict(Exception):
    """The request does not fit the escalation's current state."""


@dataclass
class NewEscalation:
    """What the bot sends when it hands a conversation over."""

    sender_id: str
    channel: str
    language: str
    ticket: Optional[str] = None
    priority: str = "normal"
    merchant_id: Optional[str] = None
    terminal_serial: Optional[str] = None
    error_code: Optional[str] = None
    contact: Optional[str] = None
    summary: Optional[str] = None
    diagnostics: Optional[List[Dict[str, str]]] = None
    transcript: Optional[List[Dict[str, Any]]] = None


class DeskStore:
    """All reads and writes of the desk, over one asyncio engine."""

    def __init__(self, engine: AsyncEngine, hub: Optional[LiveHub] = None) -> None:
        self.engine = engine
        # Every write that changes a case is announced here once it has committed.
        self.hub = hub or LiveHub()

    def changed(self, escalation_id: int, change: str) -> None:
        """Tell open consoles that a case changed (after the transaction committed)."""
        self.hub.publish({"type": "case", "id": escalation_id, "change": change})

    # --- escalations -------------------------------------------------------------

    async def create_escalation(self, new: NewEscalation, expected_reply_by: Optional[datetime]) -> tuple[Dict[str, Any], bool]:
        """Store a new escalation; the same ticket sent again returns the first one.

        Returns the escalation and whether it was created now (False for a repeat, so
        an outbox that retries after a lost response never creates two cases).
        """
        try:
            case, created = await self._insert_escalation(new, expected_reply_by)
        except sa.exc.IntegrityError:
            # The same ticket arrived twice at once: the other request created it.
            return await self.find_by_ticket(new.ticket or ""), False
        if created:
            self.changed(case["id"], "created")
        return case, created

    async def _insert_escalation(self, new: NewEscalation, expected_reply_by: Optional[datetime]) -> tuple[Dict[str, Any], bool]:
        now = utcnow()
        ticket = new.ticket or new_ticket()
        async with self.engine.begin() as conn:
            existing = (await conn.execute(sa.select(escalations.c.id).where(escalations.c.ticket == ticket))).scalar()
            if existing is not None:
                return await self.read_case(conn, existing), False
            escalation_id = (
                await conn.execute(
                    escalations.insert().values(
                        ticket=ticket,
                        sender_id=new.sender_id,
                        channel=new.channel,
                        language=new.language,
                        status="open",
                        priority=new.priority,
                        merchant_id=new.merchant_id,
                        terminal_serial=new.terminal_serial,
                        error_code=new.error_code,
                        contact=_masked(new.contact),
                        summary=_masked(new.summary),
                        diagnostics=new.diagnostics or [],
                        expected_reply_by=to_utc(expected_reply_by),
                        created_at=now,
                        updated_at=now,
                    )
                )
            ).inserted_primary_key[0]
            rows = [
                {
                    "escalation_id": escalation_id,
                    "role": line["role"],
                    "text": mask_card_numbers(line["text"]),
                    "at": to_utc(line.get("at")) or now,
                    # The transcript's messages are in Rasa already.
                    "kind": "transcript",
                    "delivered_at": now,
                    "source_ts": line.get("source_ts"),
                }
                for line in new.transcript or []
            ]
            await insert_new_messages(conn, rows)
            return await self.read_case(conn, escalation_id), True

    async def escalation_page(
        self,
        status: Optional[str] = None,
        ticket: Optional[str] = None,
        sender_id: Optional[str] = None,
        priority: Optional[str] = None,
        created_before: Optional[datetime] = None,
        search: Optional[str] = None,
        limit: int = DEFAULT_LIMIT,
        cursor: Optional[Cursor] = None,
    ) -> Page:
        """One page of escalations, newest first, filtered by any of the arguments (no
        transcripts); ``cursor`` names where the page starts (None: the first page).

        ``search`` matches a ticket, merchant number or terminal SN (any part, any case)
        or, with four digits or more, the digits of the stored contact.
        """
        order = (escalations.c.created_at, escalations.c.id)
        query = sa.select(escalations)
        for column, value in (("status", status), ("ticket", ticket), ("sender_id", sender_id), ("priority", priority)):
            if value:
                query = query.where(escalations.c[column] == value)
        if created_before is not None:
            query = query.where(escalations.c.created_at <= to_utc(created_before))
        if search:
            query = query.where(_search_condition(search))
        backward = cursor is not None and cursor.backward
        if cursor is not None:
            # A row-value comparison: both databases walk the (…, created_at, id) index from the key.
            key = sa.tuple_(*order)
            place = (to_utc(cursor.key.created_at), cursor.key.id)
            query = query.where(key > sa.tuple_(*place) if backward else key < sa.tuple_(*place))
        # One row past the page says whether another page follows.
        query = query.order_by(*(order if backward else [column.desc() for column in order])).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = [_escalation_dict(row) for row in (await conn.execute(query)).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        if backward:
            return Page(items=rows[::-1], more_after=True, more_before=more)
        return Page(items=rows, more_after=more, more_before=cursor is not None)

    async def list_escalations(self, **filters: Any) -> List[Dict[str, Any]]:
        """The first page of ``escalation_page`` (same arguments) as a list."""
        return (await self.escalation_page(**filters)).items

    async def get_escalation(self, escalation_id: int) -> Dict[str, Any]:
        """One escalation with its transcript."""
        async with self.engine.connect() as conn:
            return await self.read_case(conn, escalation_id)

    async def find_by_ticket(self, ticket: str) -> Dict[str, Any]:
        """The escalation with this ticket number."""
        async with self.engine.connect() as conn:
            escalation_id = (await conn.execute(sa.select(escalations.c.id).where(escalations.c.ticket == ticket))).scalar()
            if escalation_id is None:
                raise NotFound(ticket)
            return await self.read_case(conn, escalation_id)

    async def latest_for_sender(self, sender_id: str) -> Dict[str, Any]:
        """The newest escalation of one conversation."""
        async with self.engine.connect() as conn:
            escalation_id = (
                await conn.execute(
                    sa.select(escalations.c.id)
                    .where(escalations.c.sender_id == sender_id)
                    .order_by(escalations.c.created_at.desc(), escalations.c.id.desc())
                    .limit(1)
                )
            ).scalar()
            if escalation_id is None:
                raise NotFound(sender_id)
            return await self.read_case(conn, escalation_id)

    async def claim(self, escalation_id: int, agent: str, joined_text: Optional[str] = None) -> Dict[str, Any]:
        """An agent takes the case; the merchant is told once (``joined_text``, queued)."""
        async with self.engine.begin() as conn:
            current = await self.read_case(conn, escalation_id)
            if current["status"] == "resolved":
                raise Conflict("escalation is resolved")
            if current["status"] == "claimed" and current["claimed_by"] != agent:
                raise Conflict(f"escalation is claimed by {current['claimed_by']}")
            now = utcnow()
            await conn.execute(
                escalations.update()
                .where(escalations.c.id == escalation_id)
                .values(
                    status="claimed", claimed_by=agent, updated_at=now, **({} if current["claimed_by"] == agent else {"claimed_at": now})
                )
            )
            if joined_text and current["claimed_by"] != agent and current["channel"] != INCIDENT_CHANNEL:
                await conn.execute(
                    messages.insert().values(escalation_id=escalation_id, role="bot", kind="notice", text=joined_text, at=now)
                )
            case = await self.read_case(conn, escalation_id)
        self.changed(escalation_id, "updated")
        return case

    async def add_agent_reply(self, escalation_id: int, text: str, agent: Optional[str]) -> Dict[str, Any]:
        """Keep an agent's reply (undelivered until Rasa confirms it)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            current = await self.read_case(conn, escalation_id)
            if current["status"] == "resolved":
                raise Conflict("escalation is resolved")
            in_wecom = wecom_agent(current)
            if in_wecom is not None:
                raise Conflict(f"the case is handled in the WeCom client by {in_wecom}: the agent answers there")
            _not_an_incident_case(current, "replies reach its merchants")
            message_id = (
                await conn.execute(
                    messages.insert().values(
                        escalation_id=escalation_id,
                        role="agent",
                        kind="reply",
                        text=mask_card_numbers(text),
                        at=now,
                        author=agent,
                    )
                )
            ).inserted_primary_key[0]
            values: Dict[str, Any] = {"updated_at": now}
            if current["first_reply_at"] is None:
                values["first_reply_at"] = now
            if current["status"] == "open":
                values.update(status="claimed", claimed_by=agent or current["claimed_by"], claimed_at=now)
            await conn.execute(escalations.update().where(escalations.c.id == escalation_id).values(**values))
            message = await self._message(conn, message_id)
        self.changed(escalation_id, "message")
        return message

    async def resolve(
        self,
        escalation_id: int,
        note: str,
        category: Optional[str],
        closing_text: str,
        resolved_by: Optional[str] = None,
        rating_question: Optional[Dict[str, Any]] = None,
        kind: str = "closing",
    ) -> Dict[str, Any]:
        """Close the case and queue the bot's closing message (and rating question) for delivery.

        ``rating_question`` is ``{"text", "buttons"}``, sent right after the closing
        message in the same delivery; ``kind`` is ``handback`` when the case goes back to
        the bot unanswered.
        """
        now = utcnow()
        async with self.engine.begin() as conn:
            current = await self.read_case(conn, escalation_id)
            if current["status"] == "resolved":
                raise Conflict("escalation is already resolved")
            _not_an_incident_case(current, "it resolves")
            await conn.execute(
                escalations.update()
                .where(escalations.c.id == escalation_id)
                .values(
                    status="resolved",
                    resolution_note=_masked(note),
                    resolution_category=category,
                    resolved_by=resolved_by,
                    resolved_at=now,
                    updated_at=now,
                )
            )
            rows = [{"escalation_id": escalation_id, "role": "bot", "kind": kind, "text": closing_text, "at": now}]
            if rating_question:
                rows.append(
                    {
                        "escalation_id": escalation_id,
                        "role": "bot",
                        "kind": "rating",
                        "at": now,
                        "text": rating_question["text"],
                        "buttons": rating_question["buttons"],
                    }
                )
            for row in rows:  # one by one: ids in this order, the order of delivery
                await conn.execute(messages.insert().values(**row))
            case = await self.read_case(conn, escalation_id)
        self.changed(escalation_id, "updated")
        return case

    async def add_note(self, escalation_id: int, text: str, agent: Optional[str]) -> Dict[str, Any]:
        """Keep a private note on the case: shown to agents only, never sent to the merchant."""
        now = utcnow()
        async with self.engine.begin() as conn:
            await self.read_case(conn, escalation_id)
            message_id = (
                await conn.execute(
                    messages.insert().values(
                        escalation_id=escalation_id,
                        role="agent",
                        kind="note",
                        text=mask_card_numbers(text),
                        at=now,
                        author=agent,
                    )
                )
            ).inserted_primary_key[0]
            await conn.execute(escalations.update().where(escalations.c.id == escalation_id).values(updated_at=now))
            message = await self._message(conn, message_id)
        self.changed(escalation_id, "message")
        return message

    async def release(self, escalation_id: int, agent: Optional[str]) -> Dict[str, Any]:
        """Give a claimed case back to the queue (``agent``, when given, must hold it)."""
        async with self.engine.begin() as conn:
            current = await self.read_case(conn, escalation_id)
            _holds(current, agent)
            await conn.execute(
                escalations.update()
                .where(escalations.c.id == escalation_id)
                .values(status="open", claimed_by=None, claimed_at=None, updated_at=utcnow())
            )
            case = await self.read_case(conn, escalation_id)
        self.changed(escalation_id, "updated")
        return case

    async def transfer(self, escalation_id: int, agent: Optional[str], to_agent: str, joined_text: Optional[str] = None) -> Dict[str, Any]:
        """Hand a claimed case to another existing agent; the merchant is told who joined."""
        now = utcnow()
        async with self.engine.begin() as conn:
            current = await self.read_case(conn, escalation_id)
            _holds(current, agent)
            exists = (await conn.execute(sa.select(agents.c.id).where(agents.c.username == to_agent))).scalar()
            if exists is None:
                raise Conflict(f"no agent {to_agent!r}")
            if to_agent == current["claimed_by"]:
                raise Conflict(f"escalation is already claimed by {to_agent}")
            await conn.execute(
                escalations.update().where(escalations.c.id == escalation_id).values(claimed_by=to_agent, claimed_at=now, updated_at=now)
            )
            if joined_text and current["channel"] != INCIDENT_CHANNEL:
                await conn.execute(
                    messages.insert().values(escalation_id=escalation_id, role="bot", kind="notice", text=joined_text, at=now)
                )
            case = await self.read_case(conn, escalation_id)
        self.changed(escalation_id, "updated")
        return case

    async def rate(self, escalation_id: int, rating: int) -> Dict[str, Any]:
        """The merchant's 1-5 rating of a case an agent resolved, once per case."""
        async with self.engine.begin() as conn:
            current = await self.read_case(conn, escalation_id)
            if current["status"] != "resolved" or current["resolution_category"] == RETURNED_TO_BOT:
                raise Conflict("escalation is not resolved by an agent")
            # The WHERE makes "once" hold when two ratings arrive at the same moment.
            result = await conn.execute(
                escalations.update()
                .where(escalations.c.id == escalation_id, escalations.c.satisfaction.is_(None))
                .values(satisfaction=rating, satisfaction_at=utcnow())
            )
            if result.rowcount == 0:
                raise Conflict("escalation is already rated")
            case = await self.read_case(conn, escalation_id)
        self.changed(escalation_id, "updated")
        return case

    async def waiting_on(self, agent: str, idle_minutes: int) -> List[Dict[str, Any]]:
        """The agent's claimed cases where the merchant has waited on them past ``idle_minutes``.

        Waiting: nothing from the agent (reply, note, claim) for that long, and no reply
        since the merchant's last message.
        """
        now = utcnow()
        async with self.engine.connect() as conn:
            claimed = (
                await conn.execute(
                    sa.select(escalations.c.id, escalations.c.ticket, escalations.c.claimed_at, escalations.c.updated_at)
                    .where(escalations.c.status == "claimed", escalations.c.claimed_by == agent)
                    .order_by(escalations.c.id)
                )
            ).all()
            found = []
            for case_id, ticket, claimed_at, updated_at in claimed:
                lines = (
                    await conn.execute(
                        sa.select(messages.c.role, messages.c.kind, messages.c.at)
                        .where(messages.c.escalation_id == case_id)
                        .order_by(messages.c.at, messages.c.id)
                    )
                ).all()
                last_agent = max([aware(at) for role, kind, at in lines if kind in ("reply", "note")] + [aware(claimed_at or updated_at)])
                last_merchant = max([aware(at) for role, _, at in lines if role == "user"], default=None)
                answered = last_merchant is None or any(kind == "reply" and aware(at) >= last_merchant for _, kind, at in lines)
                since = max(last_agent, last_merchant) if last_merchant else last_agent
                if not answered and (now - since) >= timedelta(minutes=idle_minutes):
                    found.append({"id": case_id, "ticket": ticket, "minutes": int((now - since).total_seconds() // 60)})
            return found

    async def claimed_by(self, agent: str) -> List[Dict[str, Any]]:
        """The cases an agent holds now."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(escalations)
                    .where(escalations.c.status == "claimed", escalations.c.claimed_by == agent)
                    .order_by(escalations.c.id)
                )
            ).mappings()
            return [_escalation_dict(row) for row in rows]

    async def add_merchant_messages(self, escalation_id: int, lines: Iterable[Dict[str, Any]]) -> int:
        """Copy messages of the handoff from Rasa once each (by event timestamp): the
        merchant's (``role`` user, the default) and the bot's own (``role`` bot).

        Once across desk processes too: the broker's push and a case page's tracker read
        may file the same message at once in two processes; the unique index on
        (case, timestamp) keeps one.
        """
        rows = []
        for line in lines:
            role = line.get("role", "user")
            rows.append(
                {
                    "escalation_id": escalation_id,
                    "role": role,
                    "kind": "merchant" if role == "user" else "transcript",
                    "text": mask_card_numbers(line["text"]),
                    "at": to_utc(line["at"]),
                    "delivered_at": to_utc(line["at"]),
                    "source_ts": line["source_ts"],
                }
            )
        async with self.engine.begin() as conn:
            added = await insert_new_messages(conn, rows)
        if added:
            self.changed(escalation_id, "message")
        return added

    async def undelivered(self, escalation_id: Optional[int] = None) -> List[Dict[str, Any]]:
        """Messages for the merchant Rasa has not received yet, oldest first (never notes)."""
        query = (
            sa.select(messages, escalations.c.sender_id, escalations.c.language)
            .join(escalations, escalations.c.id == messages.c.escalation_id)
            .where(messages.c.kind.in_(SENT_KINDS), messages.c.delivered_at.is_(None))
            .order_by(messages.c.id)
        )
        if escalation_id is not None:
            query = query.where(messages.c.escalation_id == escalation_id)
        async with self.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]

    async def mark_delivery(self, message_id: int, error: Optional[str], *also: int) -> None:
        """Record a delivery attempt of a message (and ``also`` those sent with it):
        delivered now, or the error to show the agent."""
        values = {"delivery_error": error} if error else {"delivered_at": utcnow(), "delivery_error": None}
        ids = [message_id, *also]
        async with self.engine.begin() as conn:
            escalation_id = (await conn.execute(sa.select(messages.c.escalation_id).where(messages.c.id == message_id))).scalar()
            await conn.execute(messages.update().where(messages.c.id.in_(ids)).values(**values))
        if escalation_id is not None:
            self.changed(escalation_id, "message")

    # --- history ---------------------------------------------------------------------

    async def earlier_cases(self, case: Dict[str, Any], limit: int = 20) -> List[Dict[str, Any]]:
        """Cases before this one with its merchant number or terminal SN, newest first."""
        same = [escalations.c[key] == case[key] for key in ("merchant_id", "terminal_serial") if case.get(key)]
        if not same:
            return []
        created = datetime.fromisoformat(case["created_at"])
        query = (
            sa.select(escalations)
            .where(sa.or_(*same), escalations.c.id != case["id"], escalations.c.created_at <= to_utc(created))
            .order_by(escalations.c.created_at.desc(), escalations.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [_escalation_dict(row) for row in (await conn.execute(query)).mappings()]

    async def diagnostics_runs(self, sender_id: str, limit: int = 20) -> List[Dict[str, Any]]:
        """How the bot's guided diagnostics ended in one conversation, newest first."""
        query = (
            sa.select(outcomes.c.outcome, outcomes.c.fixed_step, outcomes.c.at)
            .where(outcomes.c.sender_id == sender_id)
            .order_by(outcomes.c.at.desc(), outcomes.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [
                {"outcome": row["outcome"], "fixed_step": row["fixed_step"], "at": iso(row["at"])}
                for row in (await conn.execute(query)).mappings()
            ]

    async def serial_case_counts(self, cases: List[Dict[str, Any]], window: timedelta) -> Dict[int, int]:
        """For each case with a terminal SN: how many cases of that SN were created in the
        ``window`` up to and including it (itself counted; 3 means "the 3rd in the window")."""
        serials = {case["terminal_serial"] for case in cases if case.get("terminal_serial")}
        if not serials:
            return {}
        times = [datetime.fromisoformat(case["created_at"]) for case in cases if case.get("terminal_serial")]
        query = sa.select(escalations.c.id, escalations.c.terminal_serial, escalations.c.created_at).where(
            escalations.c.terminal_serial.in_(sorted(serials)),
            escalations.c.created_at >= to_utc(min(times) - window),
            escalations.c.created_at <= to_utc(max(times)),
        )
        by_serial: Dict[str, List[tuple]] = {}
        async with self.engine.connect() as conn:
            for row_id, serial, created in (await conn.execute(query)).all():
                by_serial.setdefault(serial, []).append((aware(created), row_id))
        for keys in by_serial.values():
            keys.sort()
        counts: Dict[int, int] = {}
        for case in cases:
            if case.get("terminal_serial"):
                keys = by_serial.get(case["terminal_serial"], [])
                created = datetime.fromisoformat(case["created_at"])
                # Sorted (created, id) keys: those after (created - window, ∞) up to this case.
                counts[case["id"]] = bisect_right(keys, (created, case["id"])) - bisect_right(keys, (created - window, float("inf")))
        return counts

    # --- outcomes and stats -------------------------------------------------------------

    async def record_outcome(self, sender_id: str, outcome: str, fixed_step: Optional[str], language: str) -> None:
        """Keep how one guided diagnostics ended."""
        async with self.engine.begin() as conn:
            await conn.execute(
                outcomes.insert().values(
                    sender_id=sender_id,
                    outcome=outcome,
                    fixed_step=fixed_step,
                    language=language,
                    at=utcnow(),
                )
            )

    async def rate_bot(self, sender_id: str, rating: int) -> Dict[str, Any]:
        """The merchant's 1-5 rating of the bot's help, on that conversation's latest
        outcome (a fixed terminal), once."""
        async with self.engine.begin() as conn:
            latest = (
                await conn.execute(
                    sa.select(outcomes.c.id, outcomes.c.outcome)
                    .where(outcomes.c.sender_id == sender_id)
                    .order_by(outcomes.c.at.desc(), outcomes.c.id.desc())
                    .limit(1)
                )
            ).first()
            if latest is None:
                raise NotFound(sender_id)
            if latest.outcome != "resolved":
                raise Conflict(f"the latest diagnostics of this conversation ended {latest.outcome}, not fixed")
            # The WHERE makes "once" hold when two ratings arrive at the same moment.
            result = await conn.execute(
                outcomes.update().where(outcomes.c.id == latest.id, outcomes.c.rating.is_(None)).values(rating=rating, rated_at=utcnow())
            )
            if result.rowcount == 0:
                raise Conflict("the bot's help is already rated for this outcome")
        return {"sender_id": sender_id, "rating": rating}

    async def stats(self, days: int = 14) -> Dict[str, Any]:
        """Figures for the stats page over the last ``days`` days.

        Counted, grouped and averaged by the database (indexes on the times): the
        rows never come into Python, only one small row per day, per outcome and step.
        """
        now = utcnow()
        since = now - timedelta(days=days)
        in_period = escalations.c.created_at >= since
        async with self.engine.connect() as conn:
            dialect = conn.dialect.name
            day = _utc_day(escalations.c.created_at, dialect)
            counted = (await conn.execute(sa.select(day, sa.func.count()).where(in_period).group_by(day))).all()
            ended = (
                await conn.execute(
                    sa.select(outcomes.c.outcome, outcomes.c.fixed_step, sa.func.count())
                    .where(outcomes.c.at >= since)
                    .group_by(outcomes.c.outcome, outcomes.c.fixed_step)
                )
            ).all()
            median = await _median_first_reply(conn, in_period)
            agent_average, agent_count = (
                await conn.execute(
                    sa.select(sa.func.avg(escalations.c.satisfaction), sa.func.count(escalations.c.satisfaction)).where(
                        escalations.c.satisfaction_at >= since, escalations.c.satisfaction.isnot(None)
                    )
                )
            ).one()
            bot_average, bot_count = (
                await conn.execute(
                    sa.select(sa.func.avg(outcomes.c.rating), sa.func.count(outcomes.c.rating)).where(
                        outcomes.c.rated_at >= since, outcomes.c.rating.isnot(None)
                    )
                )
            ).one()
        per_day = {(now - timedelta(days=offset)).date().isoformat(): 0 for offset in range(days - 1, -1, -1)}
        for day_text, count in counted:
            if day_text in per_day:
                per_day[day_text] = count
        fixed_by_step: Dict[str, int] = {"network": 0, "restart": 0, "server": 0, "software": 0}
        for outcome, step, count in ended:
            if outcome == "resolved" and step in fixed_by_step:
                fixed_by_step[step] += count
        return {
            "days": days,
            "escalations_per_day": per_day,
            "solved_by_bot": sum(count for outcome, _, count in ended if outcome == "resolved"),
            "escalated": sum(count for _, count in counted),
            "fixed_by_step": fixed_by_step,
            "median_first_reply_minutes": round(median, 1) if median is not None else None,
            # The merchants' 1-5 ratings of cases an agent solved, and of the bot's help
            # after a fixed terminal (reported by the bot's rating action).
            "agent_rating_average": _rounded_average(agent_average),
            "agent_ratings": agent_count,
            "bot_rating_average": _rounded_average(bot_average),
            "bot_ratings": bot_count,
        }

    # --- agents ----------------------------------------------------------------------

    async def add_agent(self, username: str, password_hash: str, display_name: Optional[str] = None, role: str = "agent") -> None:
        """Create an agent account (the username must be new); ``role`` agent or operator."""
        async with self.engine.begin() as conn:
            exists = (await conn.execute(sa.select(agents.c.id).where(agents.c.username == username))).scalar()
            if exists is not None:
                raise Conflict(f"agent {username!r} exists")
            await conn.execute(
                agents.insert().values(
                    username=username, password_hash=password_hash, display_name=display_name, created_at=utcnow(), role=role
                )
            )

    async def display_name(self, username: str) -> str:
        """The name the merchant sees: the agent's display name, else the name given."""
        async with self.engine.connect() as conn:
            name = (await conn.execute(sa.select(agents.c.display_name).where(agents.c.username == username))).scalar()
        return name or username

    async def agent_role(self, username: str) -> Optional[str]:
        """``agent`` or ``operator`` (None for an unknown account)."""
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(agents.c.role).where(agents.c.username == username))).scalar()

    async def set_display_name(self, username: str, display_name: Optional[str]) -> None:
        """Change an agent's display name (None: the merchant sees the username)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(agents.update().where(agents.c.username == username).values(display_name=display_name))
            if result.rowcount == 0:
                raise NotFound(username)

    async def agent_names(self) -> List[str]:
        """Every agent's username, sorted."""
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.select(agents.c.username).order_by(agents.c.username))).scalars())

    # --- canned replies ------------------------------------------------------------------

    async def add_canned(self, language: str, title: str, text: str, agent: str) -> Dict[str, Any]:
        """Keep a reply an agent wrote for later use."""
        async with self.engine.begin() as conn:
            reply_id = (
                await conn.execute(
                    canned_replies.insert().values(
                        language=language, title=title, text=mask_card_numbers(text), created_by=agent, created_at=utcnow()
                    )
                )
            ).inserted_primary_key[0]
            row = (await conn.execute(sa.select(canned_replies).where(canned_replies.c.id == reply_id))).mappings().one()
            return _canned_dict(row)

    async def list_canned(self, language: Optional[str] = None) -> List[Dict[str, Any]]:
        """Agent-written replies (of one language, or all), oldest first."""
        query = sa.select(canned_replies).order_by(canned_replies.c.id)
        if language:
            query = query.where(canned_replies.c.language == language)
        async with self.engine.connect() as conn:
            return [_canned_dict(row) for row in (await conn.execute(query)).mappings()]

    async def delete_canned(self, reply_id: int) -> None:
        """Remove an agent-written reply."""
        async with self.engine.begin() as conn:
            result = await conn.execute(canned_replies.delete().where(canned_replies.c.id == reply_id))
            if result.rowcount == 0:
                raise NotFound(reply_id)

    async def agent_password_hash(self, username: str) -> Optional[str]:
        """The stored hash of an agent's password (None for unknown agents)."""
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(agents.c.password_hash).where(agents.c.username == username))).scalar()

    async def agent_count(self) -> int:
        """How many agent accounts exist."""
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(agents))).scalar()

    # --- helpers -----------------------------------------------------------------------

    async def read_case(self, conn, escalation_id: int) -> Dict[str, Any]:  # noqa: ANN001
        """One case with its transcript, read on an open connection (inside a transaction)."""
        row = (await conn.execute(sa.select(escalations).where(escalations.c.id == escalation_id))).mappings().first()
        if row is None:
            raise NotFound(escalation_id)
        transcript = (
            await conn.execute(sa.select(messages).where(messages.c.escalation_id == escalation_id).order_by(messages.c.at, messages.c.id))
        ).mappings()
        case = _escalation_dict(row)
        return {**case, "transcript": [_with_delivery(_message_dict(m), case["channel"]) for m in transcript]}

    async def _message(self, conn, message_id: int) -> Dict[str, Any]:  # noqa: ANN001
        row = (
            (
                await conn.execute(
                    sa.select(messages, escalations.c.channel)
                    .join(escalations, escalations.c.id == messages.c.escalation_id)
                    .where(messages.c.id == message_id)
                )
            )
            .mappings()
            .one()
        )
        return _with_delivery(_message_dict(row), row["channel"])


def _holds(case: Dict[str, Any], agent: Optional[str]) -> None:
    """Release and transfer need a claimed case, held by ``agent`` when one is named."""
    if case["status"] != "claimed":
        raise Conflict(f"escalation is {case['status']}, not claimed")
    if agent is not None and case["claimed_by"] != agent:
        raise Conflict(f"escalation is claimed by {case['claimed_by']}")


def incident_id_of(case: Dict[str, Any]) -> Optional[int]:
    """The incident whose shared case this is, else None."""
    if case.get("channel") != INCIDENT_CHANNEL:
        return None
    return int(str(case["sender_id"]).partition(":")[2])


def _not_an_incident_case(case: Dict[str, Any], what: str) -> None:
    incident = incident_id_of(case)
    if incident is not None:
        raise Conflict(
            f"{case['ticket']} is the shared case of incident {incident}: {what} when the incident closes (/console/incidents/{incident})"
        )


def wecom_agent(case: Dict[str, Any]) -> Optional[str]:
    """The WeCom userid of the agent answering this case in the WeCom client, else None."""
    claimed = case.get("claimed_by") or ""
    if case.get("status") == "claimed" and claimed.startswith(WECOM_AGENT_PREFIX):
        return claimed[len(WECOM_AGENT_PREFIX) :]
    return None


def delivery_state(message: Dict[str, Any], channel: str) -> Optional[str]:
    """Whether a message reached the merchant.

    ``private`` (a note), ``waiting`` (queued: Rasa has not taken it yet),
    ``delivered`` (Rasa took it and the channel pushes it; on a reporting channel: the
    channel reported it sent), ``sending`` (a reporting channel has not said yet),
    ``held`` (the channel could not send it and keeps it until the merchant writes, see
    ``delivery_reason``), ``not_pushable`` (Rasa has it, but the channel, e.g. ``rest``,
    only shows it to a client that asks); None for what the merchant wrote, what the bot
    said before the handoff and what a WeCom agent wrote in the WeCom client.
    """
    if message["kind"] == "note":
        return "private"
    if message["kind"] not in SENT_KINDS:
        return None
    reported = message.get("channel_state")
    if channel in REPORTING_CHANNELS and reported and message["kind"] != "resume":
        # The channel has it, whatever Rasa's answer to the desk said.
        return "delivered" if reported == "sent" else "held"
    if not message["delivered"]:
        return "waiting"
    if message["kind"] == "resume":
        return "delivered"  # no words for the channel to send: Rasa's taking it is all
    if channel in REPORTING_CHANNELS:
        return "sending"  # Rasa's 200 is not the platform's
    return "delivered" if channel in PUSH_CHANNELS else "not_pushable"


async def insert_new_messages(conn, rows: List[Dict[str, Any]]) -> int:  # noqa: ANN001
    """Insert messages, skipping those whose (case, Rasa timestamp) is stored already
    (by another desk process too: the unique index decides); how many were new."""
    insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
    statement = insert(messages).on_conflict_do_nothing(index_elements=["escalation_id", "source_ts"])
    added = 0
    for row in rows:  # one by one: each row's count is reliable on both databases
        added += (await conn.execute(statement.values(**row))).rowcount
    return added


def _with_delivery(message: Dict[str, Any], channel: str) -> Dict[str, Any]:
    return {**message, "delivery": delivery_state(message, channel)}


def _canned_dict(row) -> Dict[str, Any]:  # noqa: ANN001
    return {
        "id": row["id"],
        "language": row["language"],
        "title": row["title"],
        "text": row["text"],
        "created_by": row["created_by"],
        "created_at": iso(row["created_at"]),
    }


def _search_condition(term: str) -> sa.sql.ColumnElement:
    """One search box: ticket, merchant number or terminal SN (substring, any case), or
    the contact's digits, compared without the spaces, dashes and brackets people type."""
    upper = term.upper()
    keys = [sa.func.upper(escalations.c[column]).contains(upper, autoescape=True) for column in SEARCHED_COLUMNS]
    digits = "".join(ch for ch in term if ch.isascii() and ch.isdigit())
    if len(digits) >= 4:
        keys.append(contact_digits().contains(digits, autoescape=True))
    return sa.or_(*keys)


# Matched by the search box as upper-case substrings; on PostgreSQL each expression (and
# ``contact_digits``) has a trigram index (migration 0005), so a search is not a scan.
SEARCHED_COLUMNS = ("ticket", "merchant_id", "terminal_serial")


def contact_digits() -> sa.sql.ColumnElement:
    """The stored contact without the separators people type, as SQL.

    The separators are SQL literals, not parameters, so the expression is the one the
    trigram index of migration 0005 was built on and PostgreSQL can use it.
    """
    contact: sa.sql.ColumnElement = escalations.c.contact
    for separator in CONTACT_SEPARATORS:
        contact = sa.func.replace(contact, sa.literal_column(f"'{separator}'"), sa.literal_column("''"))
    return contact


CONTACT_SEPARATORS = (" ", "-", "(", ")", ".", "+")


def _rounded_average(value: Any) -> Optional[float]:
    # PostgreSQL's AVG of integers is a Decimal, SQLite's a float; None without rows.
    return round(float(value), 2) if value is not None else None


def _utc_day(column: sa.Column, dialect: str) -> sa.sql.ColumnElement:
    """The UTC calendar day of a stored time as ``YYYY-MM-DD`` text, computed by the database."""
    if dialect == "postgresql":
        # Constants as SQL literals: bound twice (select and GROUP BY) they would be two
        # parameters, and PostgreSQL would not see one expression.
        return sa.func.to_char(sa.func.timezone(sa.literal_column("'UTC'"), column), sa.literal_column("'YYYY-MM-DD'"))
    # SQLite stores the UTC wall-clock time as text.
    return sa.func.strftime(sa.literal_column("'%Y-%m-%d'"), column)


def _minutes_between(start: sa.Column, end: sa.Column, dialect: str) -> sa.sql.ColumnElement:
    if dialect == "postgresql":
        return sa.func.extract("epoch", end - start) / 60.0
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 1440.0


async def _median_first_reply(conn, in_period: sa.sql.ColumnElement) -> Optional[float]:  # noqa: ANN001
    """The median minutes from a case's creation to the first reply, in the database:
    PostgreSQL's ``percentile_cont``; on SQLite the one or two middle rows by an ordered
    ``LIMIT``/``OFFSET`` over the count (no percentile function there)."""
    dialect = conn.dialect.name
    wait = _minutes_between(escalations.c.created_at, escalations.c.first_reply_at, dialect)
    answered = sa.and_(in_period, escalations.c.first_reply_at.isnot(None))
    if dialect == "postgresql":
        median = (await conn.execute(sa.select(sa.func.percentile_cont(0.5).within_group(wait)).where(answered))).scalar()
        return float(median) if median is not None else None
    count = (await conn.execute(sa.select(sa.func.count()).where(answered))).scalar()
    if not count:
        return None
    middle = list(
        (await conn.execute(sa.select(wait).where(answered).order_by(wait).limit(2 - count % 2).offset((count - 1) // 2))).scalars()
    )
    return sum(middle) / len(middle)


def _masked(text: Optional[str]) -> Optional[str]:
    return mask_card_numbers(text) if text else text


def _escalation_dict(row) -> Dict[str, Any]:  # noqa: ANN001
    return {
        "id": row["id"],
        "ticket": row["ticket"],
        "sender_id": row["sender_id"],
        "channel": row["channel"],
        "language": row["language"],
        "status": row["status"],
        "priority": row["priority"],
        "merchant_id": row["merchant_id"],
        "terminal_serial": row["terminal_serial"],
        "error_code": row["error_code"],
        "contact": row["contact"],
        "summary": row["summary"],
        "diagnostics": row["diagnostics"] or [],
        "claimed_by": row["claimed_by"],
        "claimed_at": iso(row["claimed_at"]),
        "resolved_by": row["resolved_by"],
        "satisfaction": row["satisfaction"],
        "platform_session": row["platform_session"],
        "resolution_note": row["resolution_note"],
        "resolution_category": row["resolution_category"],
        "expected_reply_by": iso(row["expected_reply_by"]),
        "first_reply_at": iso(row["first_reply_at"]),
        "resolved_at": iso(row["resolved_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _message_dict(row) -> Dict[str, Any]:  # noqa: ANN001
    return {
        "id": row["id"],
        "role": row["role"],
        "text": row["text"],
        "at": iso(row["at"]),
        "author": row["author"],
        "kind": row["kind"],
        "delivered": row["delivered_at"] is not None,
        "delivery_error": row["delivery_error"],
        "channel_state": row["channel_state"],
        # Why the channel holds the message (a "held" report), for the agent.
        "delivery_reason": row["channel_reason"] if row["channel_state"] == "held" else None,
        "buttons": row["buttons"],
        "attachment_id": row["attachment_id"],
    }

"""Escalations, their messages, incidents and agents in the desk's database.

Every write is one transaction; the API layer validates input before it gets here and
the text a merchant wrote is stored with card numbers masked.
"""
from __future__ import annotations

import secrets
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterable, List, Optional

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from support_desk.live import LiveHub
from support_desk.privacy import mask_card_numbers
from support_desk.schema import agents, escalations, incidents, messages, outcomes

STATUSES = ("open", "claimed", "resolved")
PRIORITIES = ("urgent", "high", "normal")
ROLES = ("user", "bot", "agent")

# Crockford base32 without look-alikes: tickets are read out over the phone.
_TICKET_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ticket() -> str:
    """A human-readable ticket number such as ``PX-7K2Q9M``."""
    return "PX-" + "".join(secrets.choice(_TICKET_ALPHABET) for _ in range(6))


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(timezone.utc)


def to_utc(value: Optional[datetime]) -> Optional[datetime]:
    """Store every time in UTC: SQLite keeps the wall-clock time and drops the offset."""
    return value.astimezone(timezone.utc) if value is not None else None


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

    def _changed(self, escalation_id: int, change: str) -> None:
        """Tell open consoles that a case changed (after the transaction committed)."""
        self.hub.publish({"type": "case", "id": escalation_id, "change": change})

    # --- escalations -------------------------------------------------------------

    async def create_escalation(
        self, new: NewEscalation, expected_reply_by: Optional[datetime]
    ) -> tuple[Dict[str, Any], bool]:
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
            self._changed(case["id"], "created")
        return case, created

    async def _insert_escalation(
        self, new: NewEscalation, expected_reply_by: Optional[datetime]
    ) -> tuple[Dict[str, Any], bool]:
        now = utcnow()
        ticket = new.ticket or new_ticket()
        async with self.engine.begin() as conn:
            existing = (
                await conn.execute(sa.select(escalations.c.id).where(escalations.c.ticket == ticket))
            ).scalar()
            if existing is not None:
                return await self._escalation(conn, existing), False
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
            if rows:
                await conn.execute(messages.insert(), rows)
            return await self._escalation(conn, escalation_id), True

    async def list_escalations(
        self,
        status: Optional[str] = None,
        ticket: Optional[str] = None,
        sender_id: Optional[str] = None,
        priority: Optional[str] = None,
        created_before: Optional[datetime] = None,
        search: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """Escalations, newest first, filtered by any of the arguments (no transcripts).

        ``search`` matches a ticket, merchant number or terminal SN (any part, any case)
        or, with four digits or more, the digits of the stored contact.
        """
        query = sa.select(escalations).order_by(escalations.c.created_at.desc(), escalations.c.id.desc())
        for column, value in (("status", status), ("ticket", ticket), ("sender_id", sender_id),
                              ("priority", priority)):
            if value:
                query = query.where(escalations.c[column] == value)
        if created_before is not None:
            query = query.where(escalations.c.created_at <= to_utc(created_before))
        if search:
            query = query.where(_search_condition(search))
        async with self.engine.connect() as conn:
            return [_escalation_dict(row) for row in (await conn.execute(query)).mappings()]

    async def get_escalation(self, escalation_id: int) -> Dict[str, Any]:
        """One escalation with its transcript."""
        async with self.engine.connect() as conn:
            return await self._escalation(conn, escalation_id)

    async def find_by_ticket(self, ticket: str) -> Dict[str, Any]:
        """The escalation with this ticket number."""
        async with self.engine.connect() as conn:
            escalation_id = (
                await conn.execute(sa.select(escalations.c.id).where(escalations.c.ticket == ticket))
            ).scalar()
            if escalation_id is None:
                raise NotFound(ticket)
            return await self._escalation(conn, escalation_id)

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
            return await self._escalation(conn, escalation_id)

    async def claim(self, escalation_id: int, agent: str, joined_text: Optional[str] = None) -> Dict[str, Any]:
        """An agent takes the case; the merchant is told once (``joined_text``, queued)."""
        async with self.engine.begin() as conn:
            current = await self._escalation(conn, escalation_id)
            if current["status"] == "resolved":
                raise Conflict("escalation is resolved")
            if current["status"] == "claimed" and current["claimed_by"] != agent:
                raise Conflict(f"escalation is claimed by {current['claimed_by']}")
            now = utcnow()
            await conn.execute(
                escalations.update()
                .where(escalations.c.id == escalation_id)
                .values(status="claimed", claimed_by=agent, updated_at=now)
            )
            if joined_text and current["claimed_by"] != agent:
                await conn.execute(
                    messages.insert().values(
                        escalation_id=escalation_id, role="bot", kind="notice", text=joined_text, at=now
                    )
                )
            case = await self._escalation(conn, escalation_id)
        self._changed(escalation_id, "updated")
        return case

    async def add_agent_reply(self, escalation_id: int, text: str, agent: Optional[str]) -> Dict[str, Any]:
        """Keep an agent's reply (undelivered until Rasa confirms it)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            current = await self._escalation(conn, escalation_id)
            if current["status"] == "resolved":
                raise Conflict("escalation is resolved")
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
                values.update(status="claimed", claimed_by=agent or current["claimed_by"])
            await conn.execute(
                escalations.update().where(escalations.c.id == escalation_id).values(**values)
            )
            message = await self._message(conn, message_id)
        self._changed(escalation_id, "message")
        return message

    async def resolve(
        self, escalation_id: int, note: str, category: Optional[str], closing_text: str
    ) -> Dict[str, Any]:
        """Close the case and queue the bot's closing message for delivery."""
        now = utcnow()
        async with self.engine.begin() as conn:
            current = await self._escalation(conn, escalation_id)
            if current["status"] == "resolved":
                raise Conflict("escalation is already resolved")
            await conn.execute(
                escalations.update()
                .where(escalations.c.id == escalation_id)
                .values(
                    status="resolved",
                    resolution_note=_masked(note),
                    resolution_category=category,
                    resolved_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(
                messages.insert().values(
                    escalation_id=escalation_id, role="bot", kind="closing", text=closing_text, at=now
                )
            )
            case = await self._escalation(conn, escalation_id)
        self._changed(escalation_id, "updated")
        return case

    async def add_merchant_messages(self, escalation_id: int, lines: Iterable[Dict[str, Any]]) -> int:
        """Copy merchant messages from the Rasa tracker once each (by event timestamp)."""
        async with self.engine.begin() as conn:
            known = set(
                (
                    await conn.execute(
                        sa.select(messages.c.source_ts).where(
                            messages.c.escalation_id == escalation_id,
                            messages.c.source_ts.isnot(None),
                        )
                    )
                ).scalars()
            )
            rows = [
                {
                    "escalation_id": escalation_id,
                    "role": "user",
                    "kind": "merchant",
                    "text": mask_card_numbers(line["text"]),
                    "at": to_utc(line["at"]),
                    "delivered_at": to_utc(line["at"]),
                    "source_ts": line["source_ts"],
                }
                for line in lines
                if line["source_ts"] not in known
            ]
            if rows:
                await conn.execute(messages.insert(), rows)
        if rows:
            self._changed(escalation_id, "message")
        return len(rows)

    async def undelivered(self, escalation_id: Optional[int] = None) -> List[Dict[str, Any]]:
        """Agent replies and closing messages Rasa has not received yet, oldest first."""
        query = (
            sa.select(messages, escalations.c.sender_id, escalations.c.language)
            .join(escalations, escalations.c.id == messages.c.escalation_id)
            .where(messages.c.kind.in_(("reply", "notice", "closing")), messages.c.delivered_at.is_(None))
            .order_by(messages.c.id)
        )
        if escalation_id is not None:
            query = query.where(messages.c.escalation_id == escalation_id)
        async with self.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]

    async def mark_delivery(self, message_id: int, error: Optional[str]) -> None:
        """Record a delivery attempt: delivered now, or the error to show the agent."""
        values = {"delivery_error": error} if error else {"delivered_at": utcnow(), "delivery_error": None}
        async with self.engine.begin() as conn:
            escalation_id = (
                await conn.execute(sa.select(messages.c.escalation_id).where(messages.c.id == message_id))
            ).scalar()
            await conn.execute(messages.update().where(messages.c.id == message_id).values(**values))
        if escalation_id is not None:
            self._changed(escalation_id, "message")

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
                counts[case["id"]] = (bisect_right(keys, (created, case["id"]))
                                      - bisect_right(keys, (created - window, float("inf"))))
        return counts

    # --- incidents -----------------------------------------------------------------

    async def create_incident(self, data: Dict[str, Any]) -> Dict[str, Any]:
        """Post a known outage."""
        async with self.engine.begin() as conn:
            incident_id = (
                await conn.execute(
                    incidents.insert().values(
                        **{**data, "starts_at": to_utc(data["starts_at"]),
                           "expected_end": to_utc(data.get("expected_end"))},
                        status="active",
                        created_at=utcnow(),
                    )
                )
            ).inserted_primary_key[0]
            row = (await conn.execute(sa.select(incidents).where(incidents.c.id == incident_id))).mappings().one()
            return _incident_dict(row)

    async def list_incidents(self, active_only: bool = True) -> List[Dict[str, Any]]:
        """Incidents that are active now (started, not ended, not closed) or all of them."""
        query = sa.select(incidents).order_by(incidents.c.starts_at.desc())
        async with self.engine.connect() as conn:
            rows = [_incident_dict(row) for row in (await conn.execute(query)).mappings()]
        if not active_only:
            return rows
        now = utcnow()
        return [
            row for row in rows
            if row["status"] == "active"
            and datetime.fromisoformat(row["starts_at"]) <= now
            and (row["expected_end"] is None or datetime.fromisoformat(row["expected_end"]) > now)
        ]

    async def close_incident(self, incident_id: int) -> Dict[str, Any]:
        """Mark an incident as over."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                incidents.update().where(incidents.c.id == incident_id).values(status="resolved")
            )
            if result.rowcount == 0:
                raise NotFound(incident_id)
            row = (await conn.execute(sa.select(incidents).where(incidents.c.id == incident_id))).mappings().one()
            return _incident_dict(row)

    # --- outcomes and stats -------------------------------------------------------------

    async def record_outcome(self, sender_id: str, outcome: str, fixed_step: Optional[str], language: str) -> None:
        """Keep how one guided diagnostics ended."""
        async with self.engine.begin() as conn:
            await conn.execute(
                outcomes.insert().values(
                    sender_id=sender_id, outcome=outcome, fixed_step=fixed_step,
                    language=language, at=utcnow(),
                )
            )

    async def stats(self, days: int = 14) -> Dict[str, Any]:
        """Figures for the stats page over the last ``days`` days."""
        since = utcnow() - timedelta(days=days)
        async with self.engine.connect() as conn:
            created = (
                await conn.execute(
                    sa.select(escalations.c.created_at, escalations.c.first_reply_at)
                    .where(escalations.c.created_at >= since)
                )
            ).all()
            ended = (
                await conn.execute(
                    sa.select(outcomes.c.outcome, outcomes.c.fixed_step).where(outcomes.c.at >= since)
                )
            ).all()
        per_day: Dict[str, int] = {}
        for offset in range(days - 1, -1, -1):
            per_day[(utcnow() - timedelta(days=offset)).date().isoformat()] = 0
        waits = []
        for created_at, first_reply_at in created:
            day = aware(created_at).date().isoformat()
            if day in per_day:
                per_day[day] += 1
            if first_reply_at is not None:
                waits.append((aware(first_reply_at) - aware(created_at)).total_seconds() / 60)
        fixed_by_step: Dict[str, int] = {"network": 0, "restart": 0, "server": 0, "software": 0}
        for outcome, step in ended:
            if outcome == "resolved" and step in fixed_by_step:
                fixed_by_step[step] += 1
        waits.sort()
        median = None
        if waits:
            middle = len(waits) // 2
            median = waits[middle] if len(waits) % 2 else (waits[middle - 1] + waits[middle]) / 2
        return {
            "days": days,
            "escalations_per_day": per_day,
            "solved_by_bot": sum(1 for outcome, _ in ended if outcome == "resolved"),
            "escalated": len(created),
            "fixed_by_step": fixed_by_step,
            "median_first_reply_minutes": round(median, 1) if median is not None else None,
        }

    # --- agents ----------------------------------------------------------------------

    async def add_agent(self, username: str, password_hash: str) -> None:
        """Create an agent account (the username must be new)."""
        async with self.engine.begin() as conn:
            exists = (await conn.execute(sa.select(agents.c.id).where(agents.c.username == username))).scalar()
            if exists is not None:
                raise Conflict(f"agent {username!r} exists")
            await conn.execute(
                agents.insert().values(username=username, password_hash=password_hash, created_at=utcnow())
            )

    async def agent_password_hash(self, username: str) -> Optional[str]:
        """The stored hash of an agent's password (None for unknown agents)."""
        async with self.engine.connect() as conn:
            return (
                await conn.execute(sa.select(agents.c.password_hash).where(agents.c.username == username))
            ).scalar()

    async def agent_count(self) -> int:
        """How many agent accounts exist."""
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(agents))).scalar()

    # --- helpers -----------------------------------------------------------------------

    async def _escalation(self, conn, escalation_id: int) -> Dict[str, Any]:  # noqa: ANN001
        row = (
            await conn.execute(sa.select(escalations).where(escalations.c.id == escalation_id))
        ).mappings().first()
        if row is None:
            raise NotFound(escalation_id)
        transcript = (
            await conn.execute(
                sa.select(messages).where(messages.c.escalation_id == escalation_id).order_by(messages.c.at, messages.c.id)
            )
        ).mappings()
        return {**_escalation_dict(row), "transcript": [_message_dict(m) for m in transcript]}

    async def _message(self, conn, message_id: int) -> Dict[str, Any]:  # noqa: ANN001
        row = (await conn.execute(sa.select(messages).where(messages.c.id == message_id))).mappings().one()
        return _message_dict(row)


def _search_condition(term: str) -> sa.sql.ColumnElement:
    """One search box: ticket, merchant number or terminal SN (substring, any case), or
    the contact's digits, compared without the spaces, dashes and brackets people type."""
    upper = term.upper()
    keys = [sa.func.upper(escalations.c[column]).contains(upper, autoescape=True)
            for column in ("ticket", "merchant_id", "terminal_serial")]
    digits = "".join(ch for ch in term if ch.isascii() and ch.isdigit())
    if len(digits) >= 4:
        contact = escalations.c.contact
        for separator in (" ", "-", "(", ")", ".", "+"):
            contact = sa.func.replace(contact, separator, "")
        keys.append(contact.contains(digits, autoescape=True))
    return sa.or_(*keys)


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
    }


def _incident_dict(row) -> Dict[str, Any]:  # noqa: ANN001
    return {
        "id": row["id"],
        "region": row["region"],
        "message": {"zh": row["message_zh"], "en": row["message_en"]},
        "starts_at": iso(row["starts_at"]),
        "expected_end": iso(row["expected_end"]),
        "status": row["status"],
        "created_at": iso(row["created_at"]),
    }

"""The incident board (issue 17): known outages, the merchants linked to them, the bot's
reports that make proposals, and the audit of what operators did.

* An incident is ``active`` (posted, or a proposal an operator confirmed), ``proposed``
  (the desk saw more than the threshold of merchants report error 1000 with one region,
  terminal model or channel within the window, or fail the server-status step with
  similar answers, ``support_desk.answer_keys``), ``dismissed`` or ``resolved``.
* Every active incident has one incident case (an escalation with ticket ``INC-…``):
  merchants who still want a person are linked to it instead of one escalation each.
* Closing plans one "it is over" message per linked merchant in the same transaction
  (a ``messages`` row on the incident case, whose id is the ``desk_message_id`` the
  channels report by); ``support_desk.incident_notices`` sends them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional, Tuple

import sqlalchemy as sa

from common import incident_scope
from common.privacy import mask_card_numbers
from common.tickets import new_incident_ticket
from support_desk.answer_keys import answer_key
from support_desk.audit import audit as audit_row
from support_desk.incident_input import DIMENSIONS, IncidentText
from support_desk.schema import escalations, incident_merchants, incident_reports, incidents, messages
from support_desk.store import INCIDENT_CHANNEL, Conflict, DeskStore, NotFound, aware, iso, to_utc, utcnow

REPORT_KINDS = ("reported", "server_status_failed")
# The kind of a notice's row in messages: not among the store's SENT_KINDS, so the
# relay (which sends a case's messages to the case's own conversation) never takes it.
NOTICE_KIND = "incident_notice"
# Where the reports' values are compared for proposals: the report's column, the prefix
# of the proposal's key, the scope dimension the proposal restricts. Similar answers come
# from anywhere: their proposal's scope is everyone until the operator narrows it.
PROPOSAL_GROUPS: Tuple[Tuple[str, str, Optional[str]], ...] = (
    ("region", "regions", "regions"),
    ("terminal_model", "terminal_models", "terminal_models"),
    ("channel", "channels", "channels"),
    ("answer_key", "answers", None),
)
# A proposal key's prefix → the report column its group compares.
GROUP_COLUMNS = {prefix: column for column, prefix, _ in PROPOSAL_GROUPS}
# How many of the merchants' own words a proposal shows as evidence.
EVIDENCE_ANSWERS = 5
# Notice states that are still on their way.
UNFINISHED = ("pending", "sending")


@dataclass(frozen=True)
class Merchant:
    """A merchant the bot links to an incident."""

    sender_id: str
    channel: str
    language: str
    wants_person: bool
    subscribed: bool
    merchant_id: Optional[str] = None
    terminal_serial: Optional[str] = None
    terminal_model: Optional[str] = None
    region: Optional[str] = None
    contact: Optional[str] = None
    summary: Optional[str] = None


@dataclass(frozen=True)
class Report:
    """A merchant's error-1000 report, the evidence proposals are made of."""

    sender_id: str
    channel: str
    language: str
    kind: str
    region: Optional[str] = None
    terminal_model: Optional[str] = None
    merchant_id: Optional[str] = None
    answer: Optional[str] = None


@dataclass(frozen=True)
class Notice:
    """One "it is over" message still to send."""

    row_id: int
    incident_id: int
    message_id: int
    sender_id: str
    text: str
    state: str
    attempt_at: Optional[datetime]


def covers(scope: Optional[Dict[str, List[str]]], merchant: Dict[str, Optional[str]]) -> bool:
    """Whether a scope surely covers a merchant's known values (``common.incident_scope``;
    undecided, a restricted dimension the report does not know, counts as not covered)."""
    return incident_scope.matches(scope, merchant) is True


class IncidentBoard:
    """Reads and writes of incidents, over the desk's store (its engine and live hub)."""

    def __init__(self, store: DeskStore) -> None:
        self.store = store
        self.engine = store.engine

    # --- posting, listing ------------------------------------------------------------

    async def post(self, text: IncidentText, actor: str, window_minutes: int) -> Dict[str, Any]:
        """Post an active incident with its incident case; audited."""
        now = utcnow()
        starts_at = text.starts_at or now
        since = min(starts_at, now) - timedelta(minutes=window_minutes)
        async with self.engine.begin() as conn:
            earliest = await self._first_covered_report(conn, text.scope, since, now)
            incident_id = (
                await conn.execute(
                    incidents.insert().values(
                        region=text.region,
                        scope=text.scope,
                        message_zh=text.message_zh,
                        message_en=text.message_en,
                        starts_at=to_utc(starts_at),
                        expected_end=to_utc(text.expected_end),
                        status="active",
                        created_at=now,
                        posted_at=now,
                        first_report_at=earliest,
                    )
                )
            ).inserted_primary_key[0]
            case_id = await self._open_case(conn, incident_id, text, now)
            await audit(conn, actor, "incident.post", incident_id, {"scope": text.scope})
            incident = await self._read(conn, incident_id)
        self.store.changed(case_id, "created")
        return incident

    async def list(self, active_only: bool = True) -> List[Dict[str, Any]]:
        """Incidents active now (started, not past the expected end, not closed), or all,
        newest first."""
        query = _incident_query().order_by(incidents.c.starts_at.desc(), incidents.c.id.desc())
        if active_only:
            now = utcnow()
            query = query.where(
                incidents.c.status == "active",
                incidents.c.starts_at <= now,
                sa.or_(incidents.c.expected_end.is_(None), incidents.c.expected_end > now),
            )
        async with self.engine.connect() as conn:
            return [_incident_dict(row) for row in (await conn.execute(query)).mappings()]

    async def proposals(self) -> List[Dict[str, Any]]:
        """Proposed incidents waiting for an operator, most merchants first."""
        query = _incident_query().where(incidents.c.status == "proposed").order_by(incidents.c.report_count.desc(), incidents.c.id)
        async with self.engine.connect() as conn:
            return [_incident_dict(row) for row in (await conn.execute(query)).mappings()]

    async def get(self, incident_id: int) -> Dict[str, Any]:
        """One incident with its linked merchants and what became of their notices."""
        async with self.engine.connect() as conn:
            incident = await self._read(conn, incident_id)
            rows = (
                await conn.execute(
                    sa.select(incident_merchants).where(incident_merchants.c.incident_id == incident_id).order_by(incident_merchants.c.id)
                )
            ).mappings()
            linked = [_merchant_dict(row) for row in rows]
            if incident["evidence"] is not None:
                incident["evidence"]["answers"] = await _evidence_answers(conn, incident["evidence"])
        return {**incident, "linked": linked, "notices": notice_counts(linked)}

    # --- merchants and reports from the bot --------------------------------------------

    async def link(self, incident_id: int, merchant: Merchant) -> Tuple[Dict[str, Any], bool]:
        """Link a merchant (once per sender: again updates the fields; wants_person and
        subscribed only ever turn on); NotFound when the incident is not active now."""
        active = {i["id"]: i for i in await self.list(active_only=True)}
        if incident_id not in active:
            raise NotFound(incident_id)
        values = {
            "channel": merchant.channel,
            "language": merchant.language,
            **{
                key: getattr(merchant, key)
                for key in ("merchant_id", "terminal_serial", "terminal_model", "region")
                if getattr(merchant, key) is not None
            },
            **{key: mask_card_numbers(getattr(merchant, key)) for key in ("contact", "summary") if getattr(merchant, key)},
        }
        for _ in range(2):  # a second try when another request linked the same sender just now
            try:
                row, created = await self._upsert_merchant(incident_id, merchant, values)
                break
            except sa.exc.IntegrityError:
                continue
        else:
            raise Conflict("the merchant is being linked by another request, try again")
        case_id = active[incident_id]["escalation_id"]
        if case_id is not None:
            self.store.changed(case_id, "updated")
        return {"incident_id": incident_id, "ticket": active[incident_id]["ticket"], "merchant": _merchant_dict(row)}, created

    async def _upsert_merchant(self, incident_id: int, merchant: Merchant, values: Dict[str, Any]) -> Tuple[Any, bool]:
        where = sa.and_(incident_merchants.c.incident_id == incident_id, incident_merchants.c.sender_id == merchant.sender_id)
        async with self.engine.begin() as conn:
            existing = (await conn.execute(sa.select(incident_merchants).where(where))).mappings().first()
            if existing is None:
                await conn.execute(
                    incident_merchants.insert().values(
                        incident_id=incident_id,
                        sender_id=merchant.sender_id,
                        wants_person=merchant.wants_person,
                        subscribed=merchant.subscribed,
                        linked_at=utcnow(),
                        **values,
                    )
                )
            else:
                await conn.execute(
                    incident_merchants.update()
                    .where(where)
                    .values(
                        wants_person=existing["wants_person"] or merchant.wants_person,
                        subscribed=existing["subscribed"] or merchant.subscribed,
                        **values,
                    )
                )
            row = (await conn.execute(sa.select(incident_merchants).where(where))).mappings().one()
        return row, existing is None

    async def report(self, report: Report, threshold: int, window_minutes: int) -> List[int]:
        """Keep a report; the ids of the proposals it raised or added evidence to."""
        now = utcnow()
        values = {**asdict(report), "answer_key": answer_key(report.answer) if report.kind == "server_status_failed" else None}
        async with self.engine.begin() as conn:
            await conn.execute(
                incident_reports.insert().values(
                    sender_id=report.sender_id,
                    channel=report.channel,
                    language=report.language,
                    kind=report.kind,
                    region=report.region,
                    terminal_model=report.terminal_model,
                    merchant_id=report.merchant_id,
                    answer=mask_card_numbers(report.answer) if report.answer else None,
                    answer_key=values["answer_key"],
                    at=now,
                )
            )
        touched = []
        for column, prefix, dimension in PROPOSAL_GROUPS:
            value = values[column]
            if value:
                proposal = None
                for _ in range(2):  # another desk process may open the same proposal at once
                    try:
                        proposal = await self._propose(column, prefix, dimension, value, threshold, window_minutes, now)
                        break
                    except sa.exc.IntegrityError:
                        continue
                if proposal is not None:
                    touched.append(proposal)
        return touched

    async def _propose(
        self, column: str, prefix: str, dimension: Optional[str], value: str, threshold: int, window_minutes: int, now: datetime
    ) -> Optional[int]:
        since = now - timedelta(minutes=window_minutes)
        key = f"{prefix}:{value}"
        async with self.engine.begin() as conn:
            count, first, last = (
                await conn.execute(
                    sa.select(
                        sa.func.count(sa.distinct(incident_reports.c.sender_id)),
                        sa.func.min(incident_reports.c.at),
                        sa.func.max(incident_reports.c.at),
                    ).where(
                        incident_reports.c[column] == value,
                        incident_reports.c.at >= since,
                        incident_reports.c.kind.in_(REPORT_KINDS),
                        # Merchants an active incident already holds are no evidence of another.
                        incident_reports.c.sender_id.not_in(_held_by_active()),
                    )
                )
            ).one()
            if count <= threshold:
                return None
            open_one = (
                await conn.execute(sa.select(incidents.c.id).where(incidents.c.proposal_key == key, incidents.c.status == "proposed"))
            ).scalar()
            if open_one is not None:
                await conn.execute(incidents.update().where(incidents.c.id == open_one).values(report_count=count, last_report_at=last))
                return open_one
            if await self._already_handled(conn, key, dimension, value, since, now):
                return None
            scope = {d: ([value] if d == dimension else []) for d in DIMENSIONS}
            return (
                await conn.execute(
                    incidents.insert().values(
                        region=value if dimension == "regions" else "all",
                        scope=scope,
                        message_zh="",
                        message_en="",
                        starts_at=first,
                        status="proposed",
                        created_at=now,
                        proposal_key=key,
                        report_count=count,
                        first_report_at=first,
                        last_report_at=last,
                    )
                )
            ).inserted_primary_key[0]

    async def _already_handled(
        self,
        conn,
        key: str,
        dimension: Optional[str],
        value: str,  # noqa: ANN001
        since: datetime,
        now: datetime,
    ) -> bool:
        """An active incident covers these merchants, or an operator dismissed this
        proposal within the window: no new proposal."""
        dismissed = (
            await conn.execute(
                sa.select(incidents.c.id).where(
                    incidents.c.proposal_key == key,
                    incidents.c.status == "dismissed",
                    incidents.c.ended_at >= since,
                )
            )
        ).first()
        if dismissed is not None:
            return True
        active = (
            await conn.execute(
                sa.select(incidents.c.scope).where(
                    incidents.c.status == "active",
                    incidents.c.starts_at <= now,
                    sa.or_(incidents.c.expected_end.is_(None), incidents.c.expected_end > now),
                )
            )
        ).scalars()
        # Only this dimension is known for the group (none for similar answers); the other
        # dimensions of an active scope must be open for it to cover the whole group.
        known: Dict[str, Optional[str]] = {incident_scope.DIMENSIONS[dimension]: value} if dimension else {}
        return any(covers(scope, known) for scope in active)

    # --- an operator decides on a proposal ----------------------------------------------

    async def confirm(self, incident_id: int, text: IncidentText, actor: str, threshold: int) -> Dict[str, Any]:
        """A proposal becomes an active incident with the operator's texts (and scope,
        when given); the merchants already reporting in its scope are linked; audited.
        Other proposals that the linked merchants made are withdrawn when what is left of
        their evidence no longer crosses ``threshold`` (``_withdraw_covered``)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            current = await self._read(conn, incident_id)
            if current["status"] != "proposed":
                raise Conflict(f"incident is {current['status']}, not proposed")
            scope = text.scope if any(text.scope.values()) else current["scope"]
            first = aware(datetime.fromisoformat(current["evidence"]["first_report_at"]))
            result = await conn.execute(
                incidents.update()
                .where(incidents.c.id == incident_id, incidents.c.status == "proposed")
                .values(
                    status="active",
                    scope=scope,
                    region=scope["regions"][0] if scope["regions"] else "all",
                    message_zh=text.message_zh,
                    message_en=text.message_en,
                    starts_at=to_utc(text.starts_at) or first,
                    expected_end=to_utc(text.expected_end),
                    posted_at=now,
                )
            )
            if result.rowcount == 0:
                raise Conflict("the proposal was decided by someone else just now")
            case_id = await self._open_case(conn, incident_id, text, now)
            linked = await self._link_reporting(conn, incident_id, scope, first, now)
            await audit(conn, actor, "incident.confirm", incident_id, {"scope": scope, "linked": linked})
            await self._withdraw_covered(conn, incident_id, threshold, actor, now)
            incident = await self._read(conn, incident_id)
        self.store.changed(case_id, "created")
        return incident

    async def _withdraw_covered(self, conn, incident_id: int, threshold: int, actor: str, now: datetime) -> None:  # noqa: ANN001
        """Withdraw each other open proposal whose reporters, less those an active incident
        (``incident_id`` now among them) holds, are no more than ``threshold``: the widget's 22 reports were the
        city's 21 and one shop elsewhere, and once the city's incident is confirmed the one
        shop is no outage of the widget. ``withdrawn`` (not ``dismissed``) so that new
        reports may propose it again."""
        proposals = await conn.execute(
            sa.select(incidents.c.id, incidents.c.proposal_key, incidents.c.first_report_at).where(
                incidents.c.status == "proposed", incidents.c.id != incident_id
            )
        )
        for proposal_id, key, first in proposals.all():
            prefix, _, value = str(key).partition(":")
            if prefix not in GROUP_COLUMNS:
                continue
            left = (
                await conn.execute(
                    sa.select(sa.func.count(sa.distinct(incident_reports.c.sender_id))).where(
                        incident_reports.c[GROUP_COLUMNS[prefix]] == value,
                        incident_reports.c.at >= first,
                        incident_reports.c.kind.in_(REPORT_KINDS),
                        incident_reports.c.sender_id.not_in(_held_by_active()),
                    )
                )
            ).scalar_one()
            if left <= threshold:
                await conn.execute(
                    incidents.update()
                    .where(incidents.c.id == proposal_id, incidents.c.status == "proposed")
                    .values(status="withdrawn", ended_at=now)
                )
                await audit(conn, actor, "incident.withdraw", proposal_id, {"covered_by": incident_id, "reporters_left": left})

    async def dismiss(self, incident_id: int, actor: str) -> Dict[str, Any]:
        """A proposal is not an incident (it is not proposed again within the window)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                incidents.update()
                .where(incidents.c.id == incident_id, incidents.c.status == "proposed")
                .values(status="dismissed", ended_at=utcnow())
            )
            if result.rowcount == 0:
                current = await self._read(conn, incident_id)
                raise Conflict(f"incident is {current['status']}, not proposed")
            await audit(conn, actor, "incident.dismiss", incident_id, None)
            return await self._read(conn, incident_id)

    # --- closing -------------------------------------------------------------------------

    async def close(self, incident_id: int, note: str, actor: str, notice_text: Dict[str, str]) -> Tuple[Dict[str, Any], int]:
        """Resolve an active incident and its case, and plan one notice per linked
        merchant (``notice_text`` per language); closed already: nothing more (0)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            current = await self._read(conn, incident_id)
            if current["status"] == "resolved":
                return current, 0
            if current["status"] != "active":
                raise Conflict(f"incident is {current['status']}: only an active incident is closed")
            result = await conn.execute(
                incidents.update()
                .where(incidents.c.id == incident_id, incidents.c.status == "active")
                .values(status="resolved", ended_at=now, close_note=note or None)
            )
            if result.rowcount == 0:  # closed by another request just now
                return await self._read(conn, incident_id), 0
            case_id = current["escalation_id"]
            if case_id is None:  # posted before incidents had a case
                text = IncidentText(current["scope"], current["message"]["zh"], current["message"]["en"], None, None)
                case_id = await self._open_case(conn, incident_id, text, now)
            await conn.execute(
                escalations.update()
                .where(escalations.c.id == case_id, escalations.c.status != "resolved")
                .values(
                    status="resolved",
                    resolution_note=mask_card_numbers(note) if note else "incident closed",
                    resolution_category="incident",
                    resolved_by=actor,
                    resolved_at=now,
                    updated_at=now,
                )
            )
            planned = await self._plan_notices(conn, incident_id, case_id, notice_text, now)
            if not planned:
                await conn.execute(incidents.update().where(incidents.c.id == incident_id).values(all_told_at=now))
            await audit(conn, actor, "incident.close", incident_id, {"note": note, "merchants": planned})
            incident = await self._read(conn, incident_id)
        self.store.changed(case_id, "updated")
        return incident, planned

    async def _plan_notices(
        self,
        conn,
        incident_id: int,
        case_id: int,  # noqa: ANN001
        notice_text: Dict[str, str],
        now: datetime,
    ) -> int:
        linked = (
            await conn.execute(
                sa.select(incident_merchants.c.id, incident_merchants.c.language)
                .where(
                    incident_merchants.c.incident_id == incident_id,
                    incident_merchants.c.notice_state.is_(None),
                )
                .order_by(incident_merchants.c.id)
            )
        ).all()
        for row_id, language in linked:
            text = notice_text.get(language) or notice_text["zh"]
            message_id = (
                await conn.execute(
                    messages.insert().values(
                        escalation_id=case_id,
                        role="bot",
                        kind=NOTICE_KIND,
                        text=text,
                        at=now,
                    )
                )
            ).inserted_primary_key[0]
            await conn.execute(
                incident_merchants.update()
                .where(incident_merchants.c.id == row_id)
                .values(notice_state="pending", notice_message_id=message_id)
            )
        return len(linked)

    # --- notices: claimed, sent, reported ------------------------------------------------

    async def due_notices(self, recheck_before: datetime, limit: int = 500) -> List[Notice]:
        """Notices to send: pending ones, and those whose sending started before
        ``recheck_before`` without an answer (a desk stopped in the middle)."""
        query = (
            sa.select(
                incident_merchants.c.id,
                incident_merchants.c.incident_id,
                incident_merchants.c.sender_id,
                incident_merchants.c.notice_state,
                incident_merchants.c.notice_attempt_at,
                incident_merchants.c.notice_message_id,
                messages.c.text,
            )
            .join(messages, messages.c.id == incident_merchants.c.notice_message_id)
            .where(
                sa.or_(
                    incident_merchants.c.notice_state == "pending",
                    sa.and_(incident_merchants.c.notice_state == "sending", incident_merchants.c.notice_attempt_at < recheck_before),
                )
            )
            .order_by(incident_merchants.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [
                Notice(
                    row.id, row.incident_id, row.notice_message_id, row.sender_id, row.text, row.notice_state, aware(row.notice_attempt_at)
                )
                for row in await conn.execute(query)
            ]

    async def start_sending(self, notice: Notice) -> bool:
        """Take a notice for this attempt (committed before Rasa is called); False when
        another round or desk process took it first."""
        state = incident_merchants.c.notice_state == notice.state
        same_attempt = (
            incident_merchants.c.notice_attempt_at.is_(None)
            if notice.attempt_at is None
            else incident_merchants.c.notice_attempt_at == to_utc(notice.attempt_at)
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(
                incident_merchants.update()
                .where(incident_merchants.c.id == notice.row_id, state, same_attempt)
                .values(notice_state="sending", notice_attempt_at=utcnow())
            )
        return result.rowcount == 1

    async def sent(self, notice: Notice) -> None:
        """Rasa has the notice: the merchant is told (unless the channel reported it
        held in the meantime)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                incident_merchants.update()
                .where(incident_merchants.c.id == notice.row_id, incident_merchants.c.notice_state == "sending")
                .values(notice_state="sent", told_at=now, notice_reason=None)
            )
            await conn.execute(messages.update().where(messages.c.id == notice.message_id).values(delivered_at=now, delivery_error=None))
            await _all_told(conn, notice.incident_id, now)

    async def attempt_failed(self, notice: Notice, error: str) -> None:
        """Rasa did not answer the attempt: the error, for the console (still sending)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                incident_merchants.update()
                .where(incident_merchants.c.id == notice.row_id, incident_merchants.c.notice_state == "sending")
                .values(notice_reason=error[:200])
            )

    async def _read(self, conn, incident_id: int) -> Dict[str, Any]:  # noqa: ANN001
        row = (await conn.execute(_incident_query().where(incidents.c.id == incident_id))).mappings().first()
        if row is None:
            raise NotFound(incident_id)
        return _incident_dict(row)

    async def _open_case(self, conn, incident_id: int, text: IncidentText, now: datetime) -> int:  # noqa: ANN001
        """The incident case: one escalation for every merchant linked to the incident."""
        case_id = (
            await conn.execute(
                escalations.insert().values(
                    ticket=new_incident_ticket(),
                    sender_id=f"{INCIDENT_CHANNEL}:{incident_id}",
                    channel=INCIDENT_CHANNEL,
                    language="zh",
                    status="open",
                    priority="high",
                    summary=f"{text.message_zh} / {text.message_en}",
                    diagnostics=[],
                    created_at=now,
                    updated_at=now,
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(incidents.update().where(incidents.c.id == incident_id).values(escalation_id=case_id))
        return case_id

    async def _link_reporting(
        self,
        conn,
        incident_id: int,
        scope: Dict[str, List[str]],  # noqa: ANN001
        since: datetime,
        now: datetime,
    ) -> int:
        """Link the merchants whose reports since ``since`` the scope covers (their latest)."""
        rows = (
            await conn.execute(
                sa.select(incident_reports)
                .where(
                    incident_reports.c.at >= since,
                    incident_reports.c.kind.in_(REPORT_KINDS),
                )
                .order_by(incident_reports.c.at.desc(), incident_reports.c.id.desc())
            )
        ).mappings()
        latest: Dict[str, Any] = {}
        for row in rows:
            if row["sender_id"] not in latest and covers(scope, _report_values(row)):
                latest[row["sender_id"]] = row
        for row in latest.values():
            await conn.execute(
                incident_merchants.insert().values(
                    incident_id=incident_id,
                    sender_id=row["sender_id"],
                    channel=row["channel"],
                    language=row["language"],
                    merchant_id=row["merchant_id"],
                    terminal_model=row["terminal_model"],
                    region=row["region"],
                    summary=row["answer"],
                    wants_person=False,
                    subscribed=False,
                    linked_at=now,
                )
            )
        return len(latest)

    async def _first_covered_report(
        self,
        conn,
        scope: Dict[str, List[str]],  # noqa: ANN001
        since: datetime,
        until: datetime,
    ) -> Optional[datetime]:
        rows = (
            await conn.execute(
                sa.select(incident_reports)
                .where(incident_reports.c.at >= since, incident_reports.c.at <= until, incident_reports.c.kind.in_(REPORT_KINDS))
                .order_by(incident_reports.c.at)
            )
        ).mappings()
        return next((row["at"] for row in rows if covers(scope, _report_values(row))), None)

    async def stats(self) -> Dict[str, Any]:
        """Over closed incidents: merchants per incident, minutes from the first report to
        the incident posted, seconds from closing to every merchant told."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_incident_query().where(incidents.c.status == "resolved"))).mappings()
            closed = [_incident_dict(row) for row in rows]
        return {
            "incidents": len(closed),
            "merchants_per_incident": _average([i["merchants"] for i in closed]),
            "minutes_to_post": _average([m for m in (i["minutes_to_post"] for i in closed) if m is not None]),
            "seconds_to_all_told": _average([s for s in (i["seconds_to_all_told"] for i in closed) if s is not None]),
        }


async def _evidence_answers(conn, evidence: Dict[str, Any]) -> List[str]:  # noqa: ANN001
    """The latest distinct answers (masked) of a proposal's reports: what merchants said."""
    prefix, _, value = str(evidence["key"]).partition(":")
    column = GROUP_COLUMNS.get(prefix)
    if column is None:
        return []
    rows = await conn.execute(
        sa.select(incident_reports.c.answer)
        .where(
            incident_reports.c[column] == value,
            incident_reports.c.answer.is_not(None),
            incident_reports.c.at >= aware(datetime.fromisoformat(evidence["first_report_at"])),
        )
        .order_by(incident_reports.c.at.desc(), incident_reports.c.id.desc())
        .limit(EVIDENCE_ANSWERS * 10)
    )
    return list(dict.fromkeys(row[0] for row in rows))[:EVIDENCE_ANSWERS]


def _held_by_active() -> sa.Select:
    """The sender ids linked to an active incident."""
    return (
        sa.select(incident_merchants.c.sender_id)
        .join(incidents, incidents.c.id == incident_merchants.c.incident_id)
        .where(incidents.c.status == "active")
    )


async def notice_report(
    conn,
    message_id: int,
    sender_id: str,
    state: str,  # noqa: ANN001
    reason: Optional[str],
    at: float,
) -> Optional[int]:
    """A channel's delivery report on an "it is over" message (``sent``, or ``held``: the
    48-hour window is closed): kept on the merchant's row; the incident case's id, or
    None when the message is no notice to this merchant."""
    row = (
        await conn.execute(
            sa.select(incident_merchants.c.id, incident_merchants.c.incident_id, messages.c.escalation_id, messages.c.channel_at)
            .join(messages, messages.c.id == incident_merchants.c.notice_message_id)
            .where(incident_merchants.c.notice_message_id == message_id, incident_merchants.c.sender_id == sender_id)
        )
    ).first()
    if row is None or (row.channel_at is not None and at < row.channel_at):
        return None
    now = utcnow()
    await conn.execute(
        messages.update()
        .where(messages.c.id == message_id)
        .values(channel_state=state, channel_reason=reason if state == "held" else None, channel_at=at)
    )
    values: Dict[str, Any] = {"notice_state": state, "notice_reason": reason if state == "held" else None}
    if state == "sent":
        values["told_at"] = now
    await conn.execute(incident_merchants.update().where(incident_merchants.c.id == row.id).values(**values))
    await _all_told(conn, row.incident_id, now)
    return row.escalation_id


async def _all_told(conn, incident_id: int, now: datetime) -> None:  # noqa: ANN001
    """The incident's "all told" time, once no notice of it is on its way any more."""
    waiting = (
        await conn.execute(
            sa.select(incident_merchants.c.id)
            .where(
                incident_merchants.c.incident_id == incident_id,
                incident_merchants.c.notice_state.in_(UNFINISHED),
            )
            .limit(1)
        )
    ).first()
    if waiting is None:
        await conn.execute(
            incidents.update().where(incidents.c.id == incident_id, incidents.c.all_told_at.is_(None)).values(all_told_at=now)
        )


async def audit(conn, actor: str, action: str, target: int, detail: Optional[Dict[str, Any]]) -> None:  # noqa: ANN001
    """Keep who did an operator action on an incident, in the action's own transaction."""
    await audit_row(conn, actor, action, f"incident:{target}", detail)


def notice_counts(linked: List[Dict[str, Any]]) -> Dict[str, int]:
    """How many linked merchants were reached, not reached (held), are still waiting."""
    counts = {"reached": 0, "not_reached": 0, "waiting": 0, "not_planned": 0}
    for merchant in linked:
        state = merchant["notice_state"]
        key = {"sent": "reached", "held": "not_reached", None: "not_planned"}.get(state, "waiting")
        counts[key] += 1
    return counts


def _incident_query() -> sa.Select:
    linked = sa.select(sa.func.count()).where(incident_merchants.c.incident_id == incidents.c.id).correlate(incidents).scalar_subquery()
    return sa.select(incidents, escalations.c.ticket, linked.label("merchants")).select_from(
        incidents.outerjoin(escalations, escalations.c.id == incidents.c.escalation_id)
    )


def _report_values(row: Any) -> Dict[str, Optional[str]]:
    return {"region": row["region"], "terminal_model": row["terminal_model"], "channel": row["channel"]}


def _seconds(start: Optional[datetime], end: Optional[datetime]) -> Optional[float]:
    if start is None or end is None:
        return None
    return round((aware(end) - aware(start)).total_seconds(), 1)


def _average(values: List[float]) -> Optional[float]:
    return round(sum(values) / len(values), 1) if values else None


def _incident_dict(row: Any) -> Dict[str, Any]:
    scope = row["scope"] or {d: [] for d in DIMENSIONS}
    to_post = _seconds(row["first_report_at"], row["posted_at"])
    return {
        "id": row["id"],
        "status": row["status"],
        "scope": {d: list(scope.get(d) or []) for d in DIMENSIONS},
        "region": row["region"],
        "message": {"zh": row["message_zh"], "en": row["message_en"]},
        "starts_at": iso(row["starts_at"]),
        "expected_end": iso(row["expected_end"]),
        "ended_at": iso(row["ended_at"]),
        "posted_at": iso(row["posted_at"]),
        "all_told_at": iso(row["all_told_at"]),
        "close_note": row["close_note"],
        "ticket": row["ticket"],
        "escalation_id": row["escalation_id"],
        "merchants": row["merchants"] or 0,
        "evidence": None
        if row["proposal_key"] is None
        else {
            "key": row["proposal_key"],
            "count": row["report_count"],
            "first_report_at": iso(row["first_report_at"]),
            "last_report_at": iso(row["last_report_at"]),
        },
        "minutes_to_post": round(to_post / 60, 1) if to_post is not None else None,
        "seconds_to_all_told": _seconds(row["ended_at"], row["all_told_at"]),
        "created_at": iso(row["created_at"]),
    }


def _merchant_dict(row: Any) -> Dict[str, Any]:
    return {
        "sender_id": row["sender_id"],
        "channel": row["channel"],
        "language": row["language"],
        "merchant_id": row["merchant_id"],
        "terminal_serial": row["terminal_serial"],
        "terminal_model": row["terminal_model"],
        "region": row["region"],
        "contact": row["contact"],
        "summary": row["summary"],
        "wants_person": row["wants_person"],
        "subscribed": row["subscribed"],
        "linked_at": iso(row["linked_at"]),
        "notice_state": row["notice_state"],
        "notice_reason": row["notice_reason"],
        "told_at": iso(row["told_at"]),
    }

"""What the merchants' channels report to the desk (``POST /api/channel/reports``).

A Rasa-side channel (wecom_kf, wechat) tells the desk what became of each message it was
given (sent, or held until the merchant writes again), what a WeCom agent wrote in the
WeCom client, and how the WeCom KF session changed. Every report has a ``report_id``: the
desk keeps it in ``channel_reports`` in the same transaction as the report's effect, so
a batch the channel sends again (its answer was lost) changes nothing twice, also when
the retry reaches another desk process. Those rows only guard against such repeats: what
the console shows (the last state of each message, the case's session) is on the message
and the case, so rows older than the retention (``channel_reports`` in settings.yml) are
pruned. A report that is malformed is rejected on its own; the others of its batch are
taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

import sqlalchemy as sa

from common.privacy import mask_card_numbers
from support_desk.incidents import notice_report
from support_desk.schema import channel_reports, escalations, messages
from support_desk.store import SENT_KINDS, WECOM_AGENT_PREFIX, DeskStore, utcnow
from support_desk.validation import Invalid, optional_text, required_text

KINDS = ("delivery", "agent_message", "session")
CHANNELS = ("wecom_kf", "wechat", "wecom")
STATES = ("sent", "held")
MAX_REPORTS = 200
MAX_TEXT = 4096
MAX_REASON = 200
# A WeCom userid is at most 64 characters.
MAX_USERID = 64
# What the desk writes on a case whose WeCom session ended (also its resume message).
ENDED_IN_WECOM = "ended in WeCom"
ACTIVE = ("open", "claimed")


@dataclass(frozen=True)
class Report:
    """One checked report; the fields of the other kinds are None."""

    kind: str
    report_id: str
    sender_id: str
    channel: str
    at: float
    desk_message_id: Optional[int] = None
    text: Optional[str] = None
    state: Optional[str] = None
    reason: Optional[str] = None
    servicer_userid: Optional[str] = None
    msgid: Optional[str] = None
    session_state: Optional[int] = None


@dataclass(frozen=True)
class Rejected:
    """A report of the batch that was not taken: its place in the batch and why."""

    index: int
    error: str


def parse_reports(body: Dict[str, Any]) -> Tuple[List[Report], List[Rejected]]:
    """The body's well-formed reports, in order, and the malformed ones with the reason
    (one bad report does not cost the others); ``Invalid`` when the body is no batch."""
    raw = body.get("reports")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_REPORTS:
        raise Invalid(f"reports must be a list of 1 to {MAX_REPORTS} reports")
    reports: List[Report] = []
    rejected: List[Rejected] = []
    for index, item in enumerate(raw):
        try:
            reports.append(_report(item))
        except Invalid as problem:
            rejected.append(Rejected(index, str(problem)))
    return reports, rejected


def _report(item: Any) -> Report:
    if not isinstance(item, dict):
        raise Invalid("a report must be an object")
    kind = item.get("kind")
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}")
    channel = item.get("channel")
    if channel not in CHANNELS:
        raise Invalid(f"channel must be one of {', '.join(CHANNELS)}")
    common = dict(
        kind=kind,
        report_id=required_text(item, "report_id", 128),
        sender_id=required_text(item, "sender_id", 255),
        channel=channel,
        at=_at(item),
    )
    if kind == "delivery":
        state = item.get("state")
        if state not in STATES:
            raise Invalid(f"state must be one of {', '.join(STATES)}")
        reason = required_text(item, "reason", MAX_REASON) if state == "held" else optional_text(item, "reason", MAX_REASON)
        return Report(
            **common,
            desk_message_id=_message_id(item.get("desk_message_id")),
            text=required_text(item, "text", MAX_TEXT, allow_blank=True),
            state=state,
            reason=reason,
        )
    if kind == "agent_message":
        # The platform leaves servicer_userid empty on some origin-5 messages.
        return Report(
            **common,
            text=required_text(item, "text", MAX_TEXT),
            servicer_userid=optional_text(item, "servicer_userid", MAX_USERID),
            msgid=required_text(item, "msgid", 128),
        )
    state = item.get("state")
    if isinstance(state, bool) or not isinstance(state, int) or not 0 <= state <= 4:
        raise Invalid("state must be an integer from 0 to 4")
    return Report(**common, session_state=state, servicer_userid=optional_text(item, "servicer_userid", MAX_USERID))


def _at(item: Dict[str, Any]) -> float:
    value = item.get("at")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e11:
        raise Invalid("at must be unix seconds (a number)")
    if not math.isfinite(value):
        raise Invalid("at must be unix seconds (a number)")
    return float(value)


def _message_id(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise Invalid("desk_message_id must be a positive integer or null")
    return value


@dataclass
class Taken:
    """What one batch did: the counts, and the cases that got a resume queued."""

    taken: int = 0
    ignored: int = 0
    resumed: List[int] = field(default_factory=list)


async def take_reports(store: DeskStore, reports: List[Report]) -> Taken:
    """Apply the reports in order, each once (one transaction each); the consoles hear of
    every changed case after its transaction committed.

    ``taken`` counts reports that changed a case; ``ignored`` those seen before and those
    with nothing to change (no desk_message_id, no such message, no open case, an older
    report than the one applied).
    """
    result = Taken()
    for report in reports:
        if report.kind == "delivery" and report.desk_message_id is None:
            # The bot's own message: the desk has no record of it, nothing to keep either.
            result.ignored += 1
            continue
        try:
            async with store.engine.begin() as conn:
                seen = (
                    await conn.execute(sa.select(channel_reports.c.report_id).where(channel_reports.c.report_id == report.report_id))
                ).scalar()
                if seen is not None:
                    effect = None
                else:
                    await conn.execute(
                        channel_reports.insert().values(
                            report_id=report.report_id,
                            kind=report.kind,
                            sender_id=report.sender_id,
                            channel=report.channel,
                            received_at=utcnow(),
                        )
                    )
                    effect = await _APPLY[report.kind](conn, report)
        except sa.exc.IntegrityError:
            # Another desk process took the same report_id at this moment.
            effect = None
        if effect is None:
            result.ignored += 1
            continue
        result.taken += 1
        case_id, change, resumed = effect
        store.changed(case_id, change)
        if resumed:
            result.resumed.append(case_id)
    return result


Effect = Optional[Tuple[int, str, bool]]


async def _delivery(conn, report: Report) -> Effect:  # noqa: ANN001
    if report.desk_message_id is None:  # the bot's own message: taken() leaves these out
        return None
    row = (
        await conn.execute(
            sa.select(messages.c.escalation_id, messages.c.channel_at)
            .join(escalations, escalations.c.id == messages.c.escalation_id)
            .where(messages.c.id == report.desk_message_id, escalations.c.sender_id == report.sender_id, messages.c.kind.in_(SENT_KINDS))
        )
    ).first()
    if row is None:
        # Perhaps an incident's "it is over" message to this merchant (issue 17).
        case_id = await notice_report(conn, report.desk_message_id, report.sender_id, report.state or "", report.reason, report.at)
        return None if case_id is None else (case_id, "message", False)
    if row.channel_at is not None and report.at < row.channel_at:
        return None  # a report older than the one shown
    await conn.execute(
        messages.update()
        .where(messages.c.id == report.desk_message_id)
        .values(channel_state=report.state, channel_reason=report.reason if report.state == "held" else None, channel_at=report.at)
    )
    return row.escalation_id, "message", False


async def _agent_message(conn, report: Report) -> Effect:  # noqa: ANN001
    case = await active_case(conn, report.sender_id)
    if case is None:
        return None
    now = utcnow()
    await conn.execute(
        messages.insert().values(
            escalation_id=case.id,
            role="agent",
            kind="wecom_agent",
            text=mask_card_numbers(report.text or ""),
            at=_time(report.at),
            delivered_at=now,
            author=f"WeCom {report.servicer_userid}" if report.servicer_userid else "WeCom",
        )
    )
    values: Dict[str, Any] = {"updated_at": now}
    if case.first_reply_at is None:
        values["first_reply_at"] = now
    await conn.execute(escalations.update().where(escalations.c.id == case.id).values(**values))
    return case.id, "message", False


async def _session(conn, report: Report) -> Effect:  # noqa: ANN001
    case = await active_case(conn, report.sender_id)
    if case is None or report.session_state in (0, 1):
        return None  # nothing to show: a new or bot-served session has no desk case
    now = utcnow()
    servicer = f"{WECOM_AGENT_PREFIX}{report.servicer_userid or ''}".rstrip(":")
    update = escalations.update().where(escalations.c.id == case.id)
    if report.session_state == 2:
        values: Dict[str, Any] = {"platform_session": "pool", "updated_at": now}
        if (case.claimed_by or "").startswith(WECOM_AGENT_PREFIX):
            # Back in the pool: no WeCom agent holds it any more.
            values.update(status="open", claimed_by=None, claimed_at=None)
        await conn.execute(update.values(**values))
        return case.id, "updated", False
    if report.session_state == 3:
        await conn.execute(update.values(status="claimed", claimed_by=servicer, claimed_at=now, platform_session="agent", updated_at=now))
        return case.id, "updated", False
    # 4: the WeCom session ended. The bot takes over with Rasa's resume only: the
    # platform would refuse a closing text or a rating question now.
    await conn.execute(
        update.values(
            status="resolved", resolved_by=servicer, resolved_at=now, resolution_note=ENDED_IN_WECOM, platform_session=None, updated_at=now
        )
    )
    await conn.execute(messages.insert().values(escalation_id=case.id, role="bot", kind="resume", text=ENDED_IN_WECOM, at=now))
    return case.id, "updated", True


_APPLY = {"delivery": _delivery, "agent_message": _agent_message, "session": _session}


async def prune_reports(store: DeskStore, retention: timedelta, now: Optional[datetime] = None) -> int:
    """Forget the report_ids received longer than ``retention`` ago (how many): a channel
    retries a batch for minutes, not weeks, and the messages and cases keep what they did."""
    cutoff = (now or utcnow()) - retention
    async with store.engine.begin() as conn:
        result = await conn.execute(channel_reports.delete().where(channel_reports.c.received_at < cutoff))
    return int(result.rowcount or 0)


async def active_case(conn, sender_id: str) -> Optional[sa.Row]:  # noqa: ANN001
    """The sender's newest open or claimed case (None when there is none)."""
    return (
        await conn.execute(
            sa.select(escalations.c.id, escalations.c.claimed_by, escalations.c.first_reply_at)
            .where(escalations.c.sender_id == sender_id, escalations.c.status.in_(ACTIVE))
            .order_by(escalations.c.created_at.desc(), escalations.c.id.desc())
            .limit(1)
        )
    ).first()


def _time(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=timezone.utc)

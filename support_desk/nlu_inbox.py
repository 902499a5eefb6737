"""The NLU inbox (issue 18): what the bot probably got wrong, for operators to label.

Filled from the conversation events Rasa's broker pushes (``support_desk.events_in``):
messages under the confidence threshold, fallbacks (``nlu_fallback``), out-of-scope
answers, messages answered by the clarifying question (the button the merchant chose is
kept as the suggested label), the typed messages before a handoff, and messages an agent
flags on a case page. Near-duplicates share one row (``nlu_data.normalised``); card and phone
numbers are masked before anything is stored.

An operator confirms or corrects the intent, or marks the text out of scope or ignores it.
Every label regenerates ``data/nlu/reviewed.yml`` (Rasa's YAML training data, which
``make train`` reads) from the labelled rows, atomically, in the label's transaction: a
label that cannot be written is not kept. Texts of the held-out test sets are refused;
texts the training data has already are marked reviewed but not written again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from common.privacy import mask_card_numbers, mask_phone
from common.transcript_text import VOICE_MARK
from support_desk.config import DeskSettings
from support_desk.pagination import DEFAULT_LIMIT, MAX_CURSOR
from support_desk.audit import audit
from support_desk.files import locked_async, write_atomically
from support_desk.nlu_data import domain_intents, example_keys, normalised, reviewed_yaml, yaml_files
from support_desk.schema import escalations, messages, nlu_inbox, nlu_recent
from support_desk.store import Conflict, DeskStore, NotFound, iso, utcnow
from support_desk.validation import Invalid

REASONS = ("low_confidence", "clarified", "fallback", "out_of_scope", "before_handoff", "flagged")
STATUSES = ("new", "labelled", "out_of_scope", "ignored")
ORDERS = ("newest", "frequent")
ACTIONS = ("out_of_scope", "ignore")
FALLBACK_INTENT = "nlu_fallback"
OUT_OF_SCOPE_INTENT = "out_of_scope"
HANDOFF_INTENT = "request_human"
CLARIFY_RESPONSE = "utter_clarify"
# How many typed messages before a handoff are listed, and how long a conversation's
# recent messages are kept to read later events against.
HANDOFF_MESSAGES = 2
RECENT_HOURS = 24
# How often the recent messages older than that are deleted (not on every batch).
PRUNE_EVERY = timedelta(minutes=5)

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_INTENT = re.compile(r"[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)?")


def masked(text: str) -> str:
    """The words of a merchant message as the inbox keeps them: card numbers (first 6 /
    last 4) and mobile numbers masked, without the voice message's mark (the platform's
    speech recognition wrote them, but they are still what the merchant said)."""
    words = text.strip()
    return mask_phone(mask_card_numbers(words[len(VOICE_MARK) :] if words.startswith(VOICE_MARK) else words)).strip()


def language_of(text: str, hint: Optional[str] = None) -> str:
    """``zh`` or ``en``: the language NLU tagged, else what the text looks like (zh first)."""
    if hint in ("zh", "en"):
        return str(hint)
    if not _CJK.search(text) and _LATIN_WORD.search(text):
        return "en"
    return "zh"


@dataclass(frozen=True)
class Parsed:
    """What NLU made of one merchant message (the broker's ``nlu``), checked."""

    intent: Optional[str]
    confidence: Optional[float]
    ranking: List[Dict[str, Any]]
    faq: Optional[str]
    language: Optional[str]
    clicked: bool

    @classmethod
    def of(cls, raw: Any) -> Optional["Parsed"]:
        """The parse result of an event, or None when the event carries none (an older broker)."""
        if not isinstance(raw, dict):
            return None
        given = raw.get("ranking")
        ranking = [
            {"name": item["name"][:128], "confidence": _number(item.get("confidence"))}
            for item in (given if isinstance(given, list) else [])[:3]
            if isinstance(item, dict) and isinstance(item.get("name"), str)
        ]
        return cls(
            intent=_name(raw.get("intent")),
            confidence=_number(raw.get("confidence")),
            ranking=ranking,
            faq=_name(raw.get("faq")),
            language=raw.get("language") if raw.get("language") in ("zh", "en") else None,
            clicked=raw.get("clicked") is True,
        )

    def guess(self) -> Tuple[Optional[str], Optional[float]]:
        """The bot's guess: the intent (``faq/<key>`` for the retrieval intent) and its
        confidence; behind a fallback, the likeliest intent of the ranking."""
        intent, confidence = self.intent, self.confidence
        if intent == FALLBACK_INTENT:
            best = next((item for item in self.ranking if item["name"] != FALLBACK_INTENT), None)
            intent, confidence = (best["name"], best["confidence"]) if best else (None, None)
        if intent == "faq" and self.faq:
            intent = self.faq
        return intent, confidence

    def reasons(self, threshold: float) -> Dict[str, bool]:
        """Why this message belongs in the inbox (empty: the bot was sure, and right as far as it knows)."""
        _, confidence = self.guess()
        found = {
            "fallback": self.intent == FALLBACK_INTENT,
            "out_of_scope": self.intent == OUT_OF_SCOPE_INTENT,
            "low_confidence": confidence is not None and confidence < threshold,
        }
        return {reason: True for reason, seen in found.items() if seen}


def _name(value: Any) -> Optional[str]:
    return value[:128] if isinstance(value, str) and value else None


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


# --- the inbox --------------------------------------------------------------------------


class NluInbox:
    """The inbox's reads and writes, on the desk's database."""

    def __init__(self, store: DeskStore, settings: DeskSettings) -> None:
        self.store = store
        self.settings = settings
        self._writing = asyncio.Lock()
        self._pruned_at: Optional[datetime] = None

    # --- filling -------------------------------------------------------------------

    async def take_events(self, events: Sequence[Dict[str, Any]]) -> int:
        """Read a batch of conversation events (any conversation, with a case or not);
        how many inbox entries it added to or changed."""
        by_sender: Dict[str, List[Dict[str, Any]]] = {}
        for event in events:
            if _concerns_inbox(event):
                by_sender.setdefault(event["sender_id"], []).append(event)
        if not by_sender:
            # Most batches are the bot's turn (actions, slots, answers): no transaction.
            return 0
        changed = 0
        async with self.store.engine.begin() as conn:
            now = utcnow()
            if self._pruned_at is None or now - self._pruned_at > PRUNE_EVERY:
                await conn.execute(nlu_recent.delete().where(nlu_recent.c.at < now - timedelta(hours=RECENT_HOURS)))
                self._pruned_at = now
            for sender, own in by_sender.items():
                for event in own:
                    changed += await self._take(conn, sender, event)
        return changed

    async def _take(self, conn: Any, sender: str, event: Dict[str, Any]) -> int:
        kind = event["event"]
        if kind == "bot" and event.get("utter_action") == CLARIFY_RESPONSE:
            latest = await _latest_recent(conn, sender)
            if latest is None:
                return 0
            await conn.execute(nlu_recent.update().where(nlu_recent.c.id == latest["id"]).values(clarify_asked=True))
            return await _upsert(conn, latest["text"], latest["language"], latest["at"], 0, *_recent_guess(latest), {"clarified": True})
        if kind == "pause":
            return await self._before_handoff(conn, sender)
        parsed = Parsed.of(event.get("nlu")) if kind == "user" else None
        if parsed is None:
            return 0
        at = datetime.fromtimestamp(float(event["timestamp"]), tz=timezone.utc)
        if parsed.clicked:
            return await self._clicked(conn, sender, parsed)
        text = masked(event["text"])
        intent, confidence = parsed.guess()
        language = language_of(text, parsed.language)
        insert = _insert_for(conn)(nlu_recent).on_conflict_do_nothing(index_elements=["sender_id", "source_ts"])
        added = await conn.execute(
            insert.values(
                sender_id=sender,
                source_ts=float(event["timestamp"]),
                text=text,
                language=language,
                intent=intent,
                confidence=confidence,
                ranking=parsed.ranking,
                at=at,
            )
        )
        if not added.rowcount:
            return 0  # a batch sent again: counted the first time
        reasons = parsed.reasons(self.settings.nlu_threshold)
        if not reasons:
            return 0
        return await _upsert(conn, text, language, at, 1, intent, confidence, parsed.ranking, reasons)

    async def _clicked(self, conn: Any, sender: str, parsed: Parsed) -> int:
        # A button of the clarifying question names what the message before it meant.
        latest = await _latest_recent(conn, sender)
        if latest is None or not latest["clarify_asked"] or not parsed.intent:
            return 0
        await conn.execute(nlu_recent.update().where(nlu_recent.c.id == latest["id"]).values(clarify_asked=False))
        return await _upsert(
            conn, latest["text"], latest["language"], latest["at"], 0, *_recent_guess(latest), {"clarified": True}, parsed.intent
        )

    async def _before_handoff(self, conn: Any, sender: str) -> int:
        # The handoff form's answers (merchant number, contact) come after the request
        # for a person: the messages that led to the handoff are the ones before it.
        rows = [
            dict(r)
            for r in (
                await conn.execute(sa.select(nlu_recent).where(nlu_recent.c.sender_id == sender).order_by(nlu_recent.c.source_ts.desc()))
            ).mappings()
        ]
        asked = next((n for n, row in enumerate(rows) if row["intent"] == HANDOFF_INTENT), None)
        chosen = rows[asked + 1 :] if asked is not None else rows
        changed = 0
        for row in chosen[:HANDOFF_MESSAGES]:
            changed += await _upsert(conn, row["text"], row["language"], row["at"], 0, *_recent_guess(row), {"before_handoff": True})
        return changed

    async def flag(self, escalation_id: int, message_id: int, agent: str) -> Dict[str, Any]:
        """An agent says the bot misunderstood this merchant message of the case."""
        query = (
            sa.select(messages.c.text, messages.c.at, escalations.c.language)
            .join(escalations, escalations.c.id == messages.c.escalation_id)
            .where(messages.c.id == message_id, messages.c.escalation_id == escalation_id, messages.c.role == "user")
        )
        async with self.store.engine.begin() as conn:
            row = (await conn.execute(query)).mappings().first()
            if row is None:
                raise NotFound(message_id)
            text = masked(row["text"])
            if not normalised(text):
                raise Invalid("this message has no words to label", "nlu_no_words")
            await _upsert(conn, text, language_of(text, row["language"]), row["at"], 0, None, None, None, {}, flagged_by=agent)
            entry = await _item(conn, normalised(text), by="key")
            await _audit(conn, agent, "nlu.flag", entry["id"], {"escalation_id": escalation_id, "message_id": message_id})
            return entry

    # --- reading -------------------------------------------------------------------

    async def page(
        self, status: str = "new", order: str = "newest", cursor: Optional[str] = None, limit: int = DEFAULT_LIMIT
    ) -> Dict[str, Any]:
        """One page of entries with this status, newest or most frequent first; ``next_cursor``
        (None on the last page) continues it."""
        if status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}")
        if order not in ORDERS:
            raise Invalid(f"order must be one of {', '.join(ORDERS)}")
        columns = [nlu_inbox.c.last_at, nlu_inbox.c.id] if order == "newest" else [nlu_inbox.c.count, nlu_inbox.c.last_at, nlu_inbox.c.id]
        query = sa.select(nlu_inbox).where(nlu_inbox.c.status == status)
        if cursor is not None:
            query = query.where(sa.tuple_(*columns) < sa.tuple_(*_decode(cursor, order)))
        query = query.order_by(*[column.desc() for column in columns]).limit(limit + 1)
        async with self.store.engine.connect() as conn:
            rows = [_entry(row) for row in (await conn.execute(query)).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": rows, "next_cursor": _encode(rows[-1], order) if more and rows else None}

    async def get(self, item_id: int) -> Dict[str, Any]:
        """One entry."""
        async with self.store.engine.connect() as conn:
            return await _item(conn, item_id)

    def intents(self) -> List[str]:
        """The intents an operator may choose (the domain's, ``faq/*`` expanded)."""
        return domain_intents(self.settings.nlu_domain_dir)

    # --- labelling -----------------------------------------------------------------

    async def label(
        self, item_id: int, version: int, actor: str, intent: Optional[str] = None, action: Optional[str] = None
    ) -> Dict[str, Any]:
        """Confirm or correct the intent (``intent``), or mark the entry ``out_of_scope`` /
        ``ignore`` (``action``), if nobody reviewed it since ``version``; the reviewed file
        is rewritten before the label is committed, and the label is audited.

        ``Invalid`` for an intent the domain does not have, ``Conflict`` for a stale
        version or a text of the held-out sets; then nothing is stored or written."""
        status, label = self._decision(intent, action)
        async with self._writing, locked_async(self.settings.nlu_reviewed_file):
            async with self.store.engine.begin() as conn:
                current = await _item(conn, item_id)
                if current["version"] != version:
                    raise StaleVersion(f"entry {item_id} was reviewed meanwhile (version {current['version']}, not {version}): reload it")
                key = normalised(current["text"])
                if label is not None and key in example_keys(yaml_files(self.settings.nlu_heldout_dir)):
                    raise HeldOut(f"this text is in the held-out test set ({self.settings.nlu_heldout_dir.name}/): it must stay unseen")
                in_training = label is not None and key in example_keys(self._training_files())
                changed = await conn.execute(
                    nlu_inbox.update()
                    .where(nlu_inbox.c.id == item_id, nlu_inbox.c.version == version)
                    .values(
                        status=status,
                        label=label,
                        in_training=in_training,
                        reviewed_by=actor,
                        reviewed_at=utcnow(),
                        version=nlu_inbox.c.version + 1,
                    )
                )
                if changed.rowcount != 1:  # another desk process took the same version first
                    raise StaleVersion(f"entry {item_id} was reviewed meanwhile: reload it")
                await _audit(conn, actor, "nlu.label", item_id, {"status": status, "intent": label, "in_training": in_training})
                examples = await conn.execute(
                    sa.select(nlu_inbox.c.label, nlu_inbox.c.text).where(
                        nlu_inbox.c.label.isnot(None), nlu_inbox.c.in_training == sa.false()
                    )
                )
                content = reviewed_yaml((row.label, row.text) for row in examples)
                await asyncio.get_running_loop().run_in_executor(None, write_atomically, self.settings.nlu_reviewed_file, content)
                return await _item(conn, item_id)

    def _decision(self, intent: Optional[str], action: Optional[str]) -> Tuple[str, Optional[str]]:
        """(status, label) of a review; ``Invalid`` for a label that names nothing known."""
        if action is not None:
            if action not in ACTIONS:
                raise Invalid(f"action must be one of {', '.join(ACTIONS)}")
            return ("out_of_scope", OUT_OF_SCOPE_INTENT) if action == "out_of_scope" else ("ignored", None)
        name = (intent or "").strip()
        if not name:
            raise Invalid("intent is required (or action out_of_scope / ignore)", "nlu_intent_required")
        if not _INTENT.fullmatch(name) or name not in self.intents():
            raise Invalid(f"unknown intent {name[:128]!r}: not in the domain", "nlu_unknown_intent", intent=name[:128])
        return "labelled", name

    def _training_files(self) -> List[Path]:
        reviewed = self.settings.nlu_reviewed_file.resolve()
        return [path for path in yaml_files(self.settings.nlu_training_dir) if path.resolve() != reviewed]


# Where the desk app keeps its inbox (set on start-up, beside the store).
INBOX = web.AppKey("nlu_inbox", NluInbox)


class StaleVersion(Conflict):
    """Someone reviewed the entry since the version the operator saw (a 409)."""


class HeldOut(Conflict):
    """The text is in a held-out test set, which training must never see (a 409)."""


# --- helpers ---------------------------------------------------------------------------


def _concerns_inbox(event: Dict[str, Any]) -> bool:
    """Whether :meth:`NluInbox._take` reads the event: a user message with what NLU made of
    it, the clarifying question, or a pause (a handoff)."""
    kind = event.get("event")
    if kind == "user":
        return event.get("nlu") is not None
    return kind == "pause" or (kind == "bot" and event.get("utter_action") == CLARIFY_RESPONSE)


def _insert_for(conn: Any) -> Any:
    return sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert


async def _audit(conn: Any, actor: str, action: str, item_id: int, detail: Dict[str, Any]) -> None:
    """Keep who reviewed or flagged which entry, in the action's own transaction."""
    await audit(conn, actor, action, f"nlu:{item_id}", detail)


async def _latest_recent(conn: Any, sender: str) -> Optional[Dict[str, Any]]:
    query = sa.select(nlu_recent).where(nlu_recent.c.sender_id == sender).order_by(nlu_recent.c.source_ts.desc()).limit(1)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


def _recent_guess(row: Dict[str, Any]) -> Tuple[Optional[str], Optional[float], Optional[List[Dict[str, Any]]]]:
    return row["intent"], row["confidence"], row["ranking"]


async def _upsert(
    conn: Any,
    text: str,
    language: str,
    at: datetime,
    increment: int,
    intent: Optional[str],
    confidence: Optional[float],
    ranking: Optional[List[Dict[str, Any]]],
    reasons: Dict[str, bool],
    suggested: Optional[str] = None,
    flagged_by: Optional[str] = None,
) -> int:
    """Add one sighting (``increment`` 1) or one more reason (0) to the entry of this
    text, creating it if needed: one statement, so two desk processes never make two."""
    key = normalised(text)
    if not key:
        return 0  # nothing but digits' punctuation or emoji: nothing to label
    flags = {reason: bool(reasons.get(reason)) for reason in ("low_confidence", "clarified", "fallback", "out_of_scope", "before_handoff")}
    insert = _insert_for(conn)(nlu_inbox).values(
        key=key,
        text=text,
        language=language,
        count=1,
        first_at=at,
        last_at=at,
        bot_intent=intent,
        bot_confidence=confidence,
        ranking=ranking,
        suggested=suggested,
        flagged_by=flagged_by,
        status="new",
        version=1,
        **flags,
    )
    new = insert.excluded
    update: Dict[str, Any] = {reason: sa.or_(nlu_inbox.c[reason], new[reason]) for reason in flags}
    update.update(
        suggested=sa.func.coalesce(new.suggested, nlu_inbox.c.suggested),
        flagged_by=sa.func.coalesce(new.flagged_by, nlu_inbox.c.flagged_by),
        bot_intent=sa.func.coalesce(new.bot_intent, nlu_inbox.c.bot_intent),
        bot_confidence=sa.case((new.bot_intent.isnot(None), new.bot_confidence), else_=nlu_inbox.c.bot_confidence),
        ranking=sa.case((new.bot_intent.isnot(None), new.ranking), else_=nlu_inbox.c.ranking),
    )
    if increment:
        update.update(count=nlu_inbox.c.count + increment, last_at=new.last_at)
    await conn.execute(insert.on_conflict_do_update(index_elements=["key"], set_=update))
    return 1


async def _item(conn: Any, value: Any, by: str = "id") -> Dict[str, Any]:
    row = (await conn.execute(sa.select(nlu_inbox).where(nlu_inbox.c[by] == value))).mappings().first()
    if row is None:
        raise NotFound(value)
    return _entry(row)


def _entry(row: Any) -> Dict[str, Any]:
    reasons = [reason for reason in REASONS[:5] if row[reason]] + (["flagged"] if row["flagged_by"] else [])
    return {
        "id": row["id"],
        "text": row["text"],
        "language": row["language"],
        "count": row["count"],
        "first_at": iso(row["first_at"]),
        "last_at": iso(row["last_at"]),
        "bot_intent": row["bot_intent"],
        "bot_confidence": row["bot_confidence"],
        "ranking": row["ranking"] or [],
        "reasons": reasons,
        "flagged_by": row["flagged_by"],
        "suggested": row["suggested"],
        "status": row["status"],
        "label": row["label"],
        "in_training": bool(row["in_training"]),
        "reviewed_by": row["reviewed_by"],
        "reviewed_at": iso(row["reviewed_at"]),
        "version": row["version"],
    }


def _encode(entry: Dict[str, Any], order: str) -> str:
    values = [entry["last_at"], entry["id"]] if order == "newest" else [entry["count"], entry["last_at"], entry["id"]]
    raw = json.dumps([order, *values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(text: str, order: str) -> List[Any]:
    """The row a cursor names, as values of the order's columns; ``Invalid`` for anything
    this desk did not give out (or gave out for the other order)."""
    problem = Invalid("cursor is not one this desk gave out")
    if not text or len(text) > MAX_CURSOR:
        raise problem
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode())
        if not isinstance(values, list) or not values or values[0] != order:
            raise problem
        *counts, at_text, item_id = values[1:]
        at = datetime.fromisoformat(at_text).astimezone(timezone.utc)
        numbers = [*counts, item_id]
        if len(counts) != (0 if order == "newest" else 1) or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63 for n in numbers
        ):
            raise problem
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, AttributeError):
        raise problem from None
    return [*counts, at, item_id]

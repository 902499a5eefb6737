"""Pictures merchants send during a handoff: kept in the desk's database, attached to the
sender's open case as a merchant message ``[image]``, shown to logged-in agents only.

The channel fetched the picture through the platform's media API and posts its bytes
(``POST /api/channel/attachments``); the same platform msgid posted again stores one.
"""

from __future__ import annotations

from typing import Optional, Tuple

import sqlalchemy as sa

from support_desk.channel_reports import active_case
from support_desk.schema import attachments, messages
from support_desk.store import DeskStore, utcnow

# The merchant message that carries a picture (the contract's words).
IMAGE_TEXT = "[image]"


async def add_attachment(
    store: DeskStore, sender_id: str, channel: str, msgid: str, content_type: str, data: bytes
) -> Optional[Tuple[int, bool]]:
    """Keep a picture on the sender's open or claimed case: ``(attachment id, created
    now)``; None when the sender has no such case (nothing is stored)."""
    try:
        found = await _insert(store, sender_id, channel, msgid, content_type, data)
    except sa.exc.IntegrityError:
        # The same msgid arrived at another request (or desk process) at this moment.
        found = await _existing(store, channel, msgid)
    if found is not None and found[1]:
        store.changed(found[2], "message")
    return (found[0], found[1]) if found is not None else None


async def _insert(
    store: DeskStore, sender_id: str, channel: str, msgid: str, content_type: str, data: bytes
) -> Optional[Tuple[int, bool, int]]:
    async with store.engine.begin() as conn:
        existing = (
            await conn.execute(
                sa.select(attachments.c.id, attachments.c.escalation_id).where(
                    attachments.c.channel == channel, attachments.c.msgid == msgid
                )
            )
        ).first()
        if existing is not None:
            return existing.id, False, existing.escalation_id
        case = await active_case(conn, sender_id)
        if case is None:
            return None
        now = utcnow()
        attachment_id = (
            await conn.execute(
                attachments.insert().values(
                    escalation_id=case.id, channel=channel, msgid=msgid, content_type=content_type, data=data, created_at=now
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            messages.insert().values(
                escalation_id=case.id, role="user", kind="merchant", text=IMAGE_TEXT, at=now, delivered_at=now, attachment_id=attachment_id
            )
        )
        return attachment_id, True, case.id


async def _existing(store: DeskStore, channel: str, msgid: str) -> Tuple[int, bool, int]:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(attachments.c.id, attachments.c.escalation_id).where(
                    attachments.c.channel == channel, attachments.c.msgid == msgid
                )
            )
        ).one()
    return row.id, False, row.escalation_id


async def read_attachment(store: DeskStore, attachment_id: int) -> Optional[Tuple[str, bytes]]:
    """The stored content type and bytes of a picture (None when there is none)."""
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(sa.select(attachments.c.content_type, attachments.c.data).where(attachments.c.id == attachment_id))
        ).first()
    return (row.content_type, bytes(row.data)) if row is not None else None

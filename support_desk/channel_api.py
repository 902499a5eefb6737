"""The API the merchants' channels call (Rasa-side, bearer token): what became of the
messages they were given, and the pictures merchants sent during a handoff."""

from __future__ import annotations

import logging
import time
import weakref
from datetime import timedelta

from aiohttp import web

from support_desk.api import RELAY, SETTINGS, STORE, parse_json, read_body
from common.images import looks_like
from support_desk.attachments import add_attachment
from support_desk.channel_reports import (
    CHANNELS,
    MAX_REPORTS,
    MAX_TEXT,
    parse_reports,
    prune_reports,
    take_reports,
)
from support_desk.config import DeskSettings
from support_desk.store import DeskStore
from support_desk.validation import Invalid, required_text

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()
# When this process last pruned each store's report rows (monotonic seconds): the first
# batch a process takes prunes, then one batch per ``report_prune_minutes``.
_PRUNED: "weakref.WeakKeyDictionary[DeskStore, float]" = weakref.WeakKeyDictionary()
# 200 reports of 4096 characters, each written as a JSON \uXXXX escape, with room for
# their other fields: a batch the contract allows always fits.
REPORTS_MAX_BYTES = MAX_REPORTS * (MAX_TEXT * 6 + 4096)


@routes.post("/api/channel/reports")
async def channel_reports(request: web.Request) -> web.Response:
    """Take a batch of channel reports in order, each report_id once, and answer which
    were malformed (the others are taken all the same); a session that ended in WeCom
    resumes the bot (queued and retried like every desk message)."""
    reports, rejected = parse_reports(parse_json(await read_body(request, REPORTS_MAX_BYTES)))
    for refused in rejected:
        logger.warning("channel report %d of a batch rejected: %s", refused.index, refused.error)
    store = request.app[STORE]
    taken = await take_reports(store, reports)
    for case_id in taken.resumed:
        # Rasa away: the resume stays queued with its error and the retry loop sends it.
        await request.app[RELAY].deliver_pending(case_id)
    await _prune_now_and_then(store, request.app[SETTINGS])
    return web.json_response(
        {
            "accepted": len(reports),
            "rejected": [{"index": refused.index, "error": refused.error} for refused in rejected],
            "taken": taken.taken,
            "ignored": taken.ignored,
        }
    )


async def _prune_now_and_then(store: DeskStore, settings: DeskSettings) -> None:
    now = time.monotonic()
    last = _PRUNED.get(store)
    if last is not None and now - last < settings.report_prune_minutes * 60:
        return
    _PRUNED[store] = now
    pruned = await prune_reports(store, timedelta(days=settings.report_retention_days))
    if pruned:
        logger.info("%d channel report ids older than %g days pruned", pruned, settings.report_retention_days)


@routes.post("/api/channel/attachments")
async def channel_attachment(request: web.Request) -> web.Response:
    """Keep a picture the merchant sent on their open case (201), once per msgid; 200
    ``{"ignored": true}`` when they have no open case."""
    query = dict(request.query)
    sender_id = required_text(query, "sender_id", 255)
    channel = query.get("channel")
    if channel not in CHANNELS:
        raise Invalid(f"channel must be one of {', '.join(CHANNELS)}")
    msgid = required_text(query, "msgid", 128)
    settings = request.app[SETTINGS]
    content_type = request.content_type
    if content_type not in settings.attachment_types:
        return _unsupported(f"Content-Type must be one of {', '.join(settings.attachment_types)}")
    data = await read_body(request, settings.attachment_max_bytes)
    if not data:
        raise Invalid("the body is empty: send the picture's bytes")
    if not looks_like(content_type, data):
        return _unsupported(f"the body is not a {content_type} picture")
    stored = await add_attachment(request.app[STORE], sender_id, channel, msgid, content_type, data)
    if stored is None:
        return web.json_response({"ignored": True})
    attachment_id, created = stored
    return web.json_response({"attachment_id": attachment_id}, status=201 if created else 200)


def _unsupported(message: str) -> web.Response:
    return web.json_response({"error": message}, status=415)

"""The desk's JSON API (the contract in support_desk/openapi.yml and docs/desk-api.md).

Machine clients send ``Authorization: Bearer <DESK_API_TOKEN>``. Errors are always
``{"error": "..."}`` with a 4xx status (503 when the database is unavailable), never a
stack trace.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional

from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from support_desk import cases
from support_desk.config import DeskSettings
from common.hours import expected_reply_by
from support_desk.pagination import decode_cursor, parse_limit
from support_desk.relay import RasaRelay
from support_desk.files import FileUnwritable
from support_desk.store import (
    PRIORITIES,
    ROLES,
    STATUSES,
    Conflict,
    DeskStore,
    NewEscalation,
    NotFound,
    utcnow,
)
from support_desk.validation import Invalid, optional_text, required_text, parse_time

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

OUTCOMES = ("resolved", "unresolved", "known_incident")
STEPS = ("network", "restart", "server", "software")

STORE = web.AppKey("store", DeskStore)
RELAY = web.AppKey("relay", RasaRelay)
SETTINGS = web.AppKey("settings", DeskSettings)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str) -> web.Response:
    """The one error shape of the API."""
    return web.json_response({"error": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error; the database down becomes 503."""
    try:
        return await handler(request)
    except Invalid as problem:
        return error(400, str(problem))
    except NotFound:
        return error(404, "not found")
    except Conflict as problem:
        return error(409, str(problem))
    except web.HTTPRequestEntityTooLarge:
        return error(413, "request body too large")
    except web.HTTPException as http:
        if http.status >= 400 and request.path.startswith("/api/"):
            return error(http.status, http.reason)
        raise
    except FileUnwritable as problem:
        logger.error("%s", problem)
        return error(503, f"{problem}: nothing was saved, try again")
    except (OperationalError, DBAPIError, OSError) as problem:
        logger.error("database unavailable: %r", problem)
        return error(503, "database unavailable, try again")
    except Exception:  # noqa: BLE001 - never leak a stack trace to a client
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error(500, "internal error")


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``/api/*`` needs the desk API token (the OpenAPI document is public)."""
    if request.path.startswith("/api/") and request.path != "/api/openapi.json":
        expected = request.app[SETTINGS].api_token
        supplied = request.headers.get("Authorization", "")
        scheme, _, token = supplied.partition(" ")
        if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            return error(401, "missing or wrong bearer token")
    return await handler(request)


async def read_json(request: web.Request) -> Dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong."""
    return parse_json(await request.read())


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, up to ``limit`` bytes (for the routes allowed more than the app's
    ``max_body_bytes``); a larger one is a 413, found before it is all read."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    data = bytearray()
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))


def parse_json(raw: bytes) -> Dict[str, Any]:
    """A body's bytes as a JSON object, or ``Invalid`` saying what is wrong."""
    if not raw.strip():
        raise Invalid("request body is empty: send a JSON object")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Invalid("request body is not UTF-8") from None
    except json.JSONDecodeError as problem:
        raise Invalid(f"request body is not valid JSON: {problem.msg}") from None
    except (ValueError, RecursionError):  # a 5000-digit number, nesting thousands deep
        raise Invalid("request body is not valid JSON: too deep or a number too long") from None
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    return body


def escalation_id(request: web.Request) -> int:
    """The numeric id in the path."""
    raw = request.match_info["id"]
    # ASCII digits that fit the database's 64-bit integer; anything else names no case.
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFound(raw)
    return int(raw)


@routes.get("/health")
async def health(_: web.Request) -> web.Response:
    """Liveness."""
    return web.json_response({"status": "ok"})


@routes.post("/api/escalations")
async def create_escalation(request: web.Request) -> web.Response:
    """Called by the action server at handoff; the same ticket twice creates one case."""
    body = await read_json(request)
    new = NewEscalation(
        sender_id=required_text(body, "sender_id", 255),
        channel=optional_text(body, "channel", 64) or "unknown",
        language=_choice(body, "language", ("zh", "en"), "zh"),
        ticket=optional_text(body, "ticket", 32),
        priority=_choice(body, "priority", PRIORITIES, "normal"),
        merchant_id=optional_text(body, "merchant_id", 32),
        terminal_serial=optional_text(body, "terminal_serial", 64),
        error_code=optional_text(body, "error_code", 16),
        contact=optional_text(body, "contact", 255),
        summary=optional_text(body, "summary", 2000),
        diagnostics=_diagnostics(body.get("diagnostics")),
        transcript=_transcript(body.get("transcript")),
    )
    settings = request.app[SETTINGS]
    reply_by = expected_reply_by(utcnow(), settings.business_hours, settings.first_reply_minutes)
    escalation, created = await request.app[STORE].create_escalation(new, reply_by)
    return web.json_response(escalation, status=201 if created else 200)


@routes.get("/api/escalations")
async def list_escalations(request: web.Request) -> web.Response:
    """One page of escalations, newest first; filter by status, ticket or conversation.

    ``limit`` (1-200, default 50) and ``cursor`` (a page's ``next_cursor``) page on;
    a caller that sends neither gets the first page.
    """
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}")
    cursor = request.query.get("cursor")
    found = await request.app[STORE].escalation_page(
        status=status,
        ticket=request.query.get("ticket"),
        sender_id=request.query.get("sender_id"),
        limit=parse_limit(request.query.get("limit")),
        cursor=decode_cursor(cursor) if cursor is not None else None,
    )
    return web.json_response({"escalations": found.items, "next_cursor": found.next_cursor})


@routes.get("/api/escalations/{id}")
async def get_escalation(request: web.Request) -> web.Response:
    """One escalation with its transcript, including what the merchant wrote since."""
    return web.json_response(await cases.case_with_live_transcript(request.app[STORE], request.app[RELAY], escalation_id(request)))


@routes.post("/api/escalations/{id}/claim")
async def claim(request: web.Request) -> web.Response:
    """An agent takes the case."""
    body = await read_json(request)
    agent = required_text(body, "agent", 64)
    return web.json_response(
        await cases.claim(request.app[STORE], request.app[RELAY], request.app[SETTINGS], escalation_id(request), agent)
    )


@routes.post("/api/escalations/{id}/reply")
async def reply(request: web.Request) -> web.Response:
    """Keep the agent's reply and deliver it into the merchant's chat.

    201 when Rasa took it; 202 with ``delivered: false`` and the error when Rasa is
    unreachable: the reply stays queued and is sent when Rasa is back.
    """
    body = await read_json(request)
    text = required_text(body, "text", 4000)
    result = await cases.reply(
        request.app[STORE],
        request.app[RELAY],
        escalation_id(request),
        text,
        optional_text(body, "agent", 64),
    )
    return web.json_response(result.record, status=201 if result.delivered else 202)


@routes.post("/api/escalations/{id}/resolve")
async def resolve(request: web.Request) -> web.Response:
    """Close the case; the bot resumes the conversation and says so."""
    body = await read_json(request)
    note = required_text(body, "note", 2000)
    category = optional_text(body, "category", 64)
    result = await cases.resolve(
        request.app[STORE],
        request.app[RELAY],
        request.app[SETTINGS],
        escalation_id(request),
        note,
        category,
        optional_text(body, "agent", 64),
    )
    return web.json_response(result.record, status=200 if result.delivered else 202)


@routes.post("/api/escalations/{id}/notes")
async def add_note(request: web.Request) -> web.Response:
    """A private note on the case: for agents only, never sent to the merchant."""
    body = await read_json(request)
    text = required_text(body, "text", 4000)
    note = await request.app[STORE].add_note(escalation_id(request), text, optional_text(body, "agent", 64))
    return web.json_response(note, status=201)


@routes.post("/api/escalations/{id}/release")
async def release(request: web.Request) -> web.Response:
    """A claimed case goes back to the queue (``agent``, when given, must hold it)."""
    body = await read_json(request)
    return web.json_response(await request.app[STORE].release(escalation_id(request), optional_text(body, "agent", 64)))


@routes.post("/api/escalations/{id}/transfer")
async def transfer(request: web.Request) -> web.Response:
    """A claimed case goes to another existing agent; the merchant is told who joined."""
    body = await read_json(request)
    to_agent = required_text(body, "to", 64)
    return web.json_response(
        await cases.transfer(
            request.app[STORE],
            request.app[RELAY],
            request.app[SETTINGS],
            escalation_id(request),
            optional_text(body, "agent", 64),
            to_agent,
        )
    )


@routes.post("/api/escalations/{id}/handback")
async def hand_back(request: web.Request) -> web.Response:
    """An unanswered case goes back to the bot, which tells the merchant so."""
    body = await read_json(request)
    result = await cases.hand_back(
        request.app[STORE],
        request.app[RELAY],
        request.app[SETTINGS],
        escalation_id(request),
        optional_text(body, "agent", 64),
        optional_text(body, "note", 2000) or "",
    )
    return web.json_response(result.record, status=200 if result.delivered else 202)


@routes.post("/api/escalations/{id}/satisfaction")
async def satisfaction(request: web.Request) -> web.Response:
    """The merchant's 1-5 rating of the agent's help (once per resolved case)."""
    body = await read_json(request)
    rating = body.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise Invalid("rating must be an integer from 1 to 5")
    return web.json_response(await request.app[STORE].rate(escalation_id(request), rating))


@routes.post("/api/outcomes")
async def record_outcome(request: web.Request) -> web.Response:
    """The bot reports how a guided diagnostics ended (for the stats)."""
    body = await read_json(request)
    outcome = _choice(body, "outcome", OUTCOMES, "")
    if not outcome:
        raise Invalid(f"outcome must be one of {', '.join(OUTCOMES)}")
    fixed_step = body.get("fixed_step")
    if fixed_step is not None and fixed_step not in STEPS:
        raise Invalid(f"fixed_step must be one of {', '.join(STEPS)}")
    await request.app[STORE].record_outcome(
        required_text(body, "sender_id", 255),
        outcome,
        fixed_step,
        _choice(body, "language", ("zh", "en"), "zh"),
    )
    return web.json_response({"recorded": True}, status=201)


@routes.post("/api/outcomes/rating")
async def rate_bot(request: web.Request) -> web.Response:
    """The merchant's 1-5 rating of the bot's help after a fixed terminal, set on that
    conversation's latest outcome, once (404 without an outcome, 409 when rated)."""
    body = await read_json(request)
    rating = body.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise Invalid("rating must be an integer from 1 to 5")
    return web.json_response(await request.app[STORE].rate_bot(required_text(body, "sender_id", 255), rating), status=201)


@routes.get("/api/stats")
async def stats(request: web.Request) -> web.Response:
    """Escalations per day, bot-solved vs escalated, fixes per step, median first reply."""
    return web.json_response(await request.app[STORE].stats())


def _choice(body: Dict[str, Any], key: str, allowed, default: str) -> str:  # noqa: ANN001
    value = body.get(key, default)
    if value is None:
        return default
    if value not in allowed:
        raise Invalid(f"{key} must be one of {', '.join(allowed)}")
    return value


def _diagnostics(value: Any) -> List[Dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 20:
        raise Invalid("diagnostics must be a list of at most 20 {step, outcome} objects")
    return [
        {"step": required_text(item, "step", 32), "outcome": required_text(item, "outcome", 32)}
        for item in (_object(item, "diagnostics") for item in value)
    ]


def _transcript(value: Any) -> List[Dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 500:
        raise Invalid("transcript must be a list of at most 500 messages")
    lines = []
    for item in (_object(item, "transcript") for item in value):
        role = item.get("role")
        if role not in ROLES:
            raise Invalid(f"transcript role must be one of {', '.join(ROLES)}")
        lines.append(
            {
                "role": role,
                "text": required_text(item, "text", 4000, allow_blank=True),
                "at": parse_time(item, "at"),
                "source_ts": _finite(item.get("source_ts")),
            }
        )
    return lines


def _finite(value: Any) -> Optional[float]:
    """A finite number (JSON allows NaN and Infinity through Python's parser), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not abs(value) < 1e15:  # also NaN and infinities; compared before float(): 10**400
        return None
    return float(value)


def _object(item: Any, where: str) -> Dict[str, Any]:
    if not isinstance(item, dict):
        raise Invalid(f"every {where} entry must be an object")
    return item

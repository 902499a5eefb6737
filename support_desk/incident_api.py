"""The incident board's JSON API (bearer token; ``support_desk/openapi.yml``).

The bot reads active incidents, links merchants to one and reports what merchants see;
an operator's tooling posts, confirms, dismisses and closes incidents (audited as
``api``; the console audits the operator's own name).
"""

from __future__ import annotations

from aiohttp import web

from support_desk.api import SETTINGS, escalation_id, read_json
from support_desk.incident_input import incident_from_json, region_code, terminal_model
from support_desk.incident_notices import IncidentNotices, notice_texts
from support_desk.incidents import REPORT_KINDS, IncidentBoard, Merchant, Report
from support_desk.validation import Invalid, optional_text, required_text

routes = web.RouteTableDef()
BOARD = web.AppKey("incident_board", IncidentBoard)
NOTICES = web.AppKey("incident_notices", IncidentNotices)
API_ACTOR = "api"
LANGUAGES = ("zh", "en")


@routes.get("/api/incidents")
async def list_incidents(request: web.Request) -> web.Response:
    """Incidents active now (``?all=1`` for every one, proposals included)."""
    every = request.query.get("all", "").lower() in ("1", "true", "yes")
    return web.json_response({"incidents": await request.app[BOARD].list(active_only=not every)})


@routes.post("/api/incidents")
async def create_incident(request: web.Request) -> web.Response:
    """Post a known outage: scope (missing: everyone), start, expected end, zh and en text."""
    text = incident_from_json(await read_json(request))
    incident = await request.app[BOARD].post(text, API_ACTOR, request.app[SETTINGS].incident_window_minutes)
    return web.json_response(incident, status=201)


@routes.get("/api/incidents/{id}")
async def get_incident(request: web.Request) -> web.Response:
    """One incident with its linked merchants and what became of their notices."""
    return web.json_response(await request.app[BOARD].get(escalation_id(request)))


@routes.post("/api/incidents/reports")
async def report(request: web.Request) -> web.Response:
    """The bot's evidence: a merchant reported error 1000, or the server-status step did
    not solve it (202; proposals are made from these)."""
    body = await read_json(request)
    kind = body.get("kind")
    if kind not in REPORT_KINDS:
        raise Invalid(f"kind must be one of {', '.join(REPORT_KINDS)}")
    region = optional_text(body, "region", 16)
    model = optional_text(body, "terminal_model", 64)
    settings = request.app[SETTINGS]
    proposals = await request.app[BOARD].report(
        Report(
            sender_id=required_text(body, "sender_id", 255),
            channel=_channel(body),
            language=_language(body),
            kind=kind,
            region=region_code(region) if region else None,
            terminal_model=terminal_model(model) if model else None,
            merchant_id=optional_text(body, "merchant_id", 32),
            answer=optional_text(body, "answer", 500),
        ),
        settings.incident_threshold,
        settings.incident_window_minutes,
    )
    return web.json_response({"accepted": True, "proposals": proposals}, status=202)


@routes.post("/api/incidents/{id}/merchants")
async def link_merchant(request: web.Request) -> web.Response:
    """Link a merchant to an active incident (201; 200 when linked already; 404 when the
    incident is not active: the bot then escalates as usual)."""
    body = await read_json(request)
    model = optional_text(body, "terminal_model", 64)
    region = optional_text(body, "region", 16)
    merchant = Merchant(
        sender_id=required_text(body, "sender_id", 255),
        channel=_channel(body),
        language=_language(body),
        wants_person=_flag(body, "wants_person"),
        subscribed=_flag(body, "subscribed"),
        merchant_id=optional_text(body, "merchant_id", 32),
        terminal_serial=optional_text(body, "terminal_serial", 64),
        terminal_model=terminal_model(model) if model else None,
        region=region_code(region) if region else None,
        contact=optional_text(body, "contact", 255),
        summary=optional_text(body, "summary", 2000),
    )
    linked, created = await request.app[BOARD].link(escalation_id(request), merchant)
    return web.json_response(linked, status=201 if created else 200)


@routes.post("/api/incidents/{id}/close")
async def close_incident(request: web.Request) -> web.Response:
    """End an outage: every linked merchant is sent one message in their language;
    closing again sends nothing (``notices_planned`` 0)."""
    body = await read_json(request) if request.can_read_body else {}
    note = optional_text(body, "note", 2000) or ""
    incident, planned = await close(request, escalation_id(request), note, API_ACTOR)
    return web.json_response({**incident, "notices_planned": planned})


@routes.post("/api/incidents/{id}/confirm")
async def confirm(request: web.Request) -> web.Response:
    """A proposed incident becomes active with its texts (the merchants reporting in its
    scope are linked)."""
    text = incident_from_json(await read_json(request))
    return web.json_response(
        await request.app[BOARD].confirm(escalation_id(request), text, API_ACTOR, request.app[SETTINGS].incident_threshold)
    )


@routes.post("/api/incidents/{id}/dismiss")
async def dismiss(request: web.Request) -> web.Response:
    """A proposed incident is not one."""
    return web.json_response(await request.app[BOARD].dismiss(escalation_id(request), API_ACTOR))


async def close(request: web.Request, incident_id: int, note: str, actor: str) -> tuple:
    """Close an incident (API or console) and start sending its notices."""
    board = request.app[BOARD]
    # An active incident has no ended_at: the window in the message ends now.
    texts = notice_texts(request.app[SETTINGS], await board.get(incident_id))
    incident, planned = await board.close(incident_id, note, actor, texts)
    if planned:
        request.app[NOTICES].kick()
    return incident, planned


def _channel(body: dict) -> str:
    # The channel the merchant wrote on, as the bot knows it (Rasa's input channel name).
    return required_text(body, "channel", 64)


def _language(body: dict) -> str:
    value = body.get("language", "zh")
    if value not in LANGUAGES:
        raise Invalid("language must be zh or en")
    return value


def _flag(body: dict, key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise Invalid(f"{key} must be true or false")
    return value

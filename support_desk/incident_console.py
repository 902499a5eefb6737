"""The console's incident pages: the board with its proposals, one incident with its linked
merchants (reached / not reached), and the operators' forms to post, confirm, dismiss and
close. Agents read; only operators act, and every action is audited with their name."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Awaitable, Callable, Dict, List, Optional

from aiohttp import web
from aiohttp_session import get_session
from multidict import MultiDictProxy

from common.privacy import mask_phone
from support_desk.api import SETTINGS, STORE
from support_desk.console import _id, agent_only, flash, form_zone, page, texts, word
from support_desk.incident_api import BOARD, close
from support_desk.incident_input import CHANNELS, IncidentText, parse_scope, plain_text, regions, terminal_models
from support_desk.audit import audit_trail
from support_desk.store import utcnow
from support_desk.validation import Invalid, optional_text, parse_time

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def operators_only(refusal: str) -> Callable[[Handler], Handler]:
    """Operators only (inside ``agent_only``: logged in, CSRF checked); an agent gets a
    403 with the console's ``refusal`` words."""

    def decorate(handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            agent = (await get_session(request))["agent"]
            if await request.app[STORE].agent_role(agent) != "operator":
                raise web.HTTPForbidden(text=await word(request, refusal))
            return await handler(request)

        return wrapped

    return decorate


operator_only = operators_only("operators_only")


async def actor(request: web.Request) -> str:
    """The logged-in operator's name, for the audit log."""
    return str((await get_session(request))["agent"])


@routes.get("/console/incidents")
@agent_only
async def incidents_page(request: web.Request) -> web.Response:
    """Every incident, newest first, the proposals, the figures and the form to post one."""
    board = request.app[BOARD]
    agent, lang = await actor(request), (await get_session(request)).get("lang", "zh")
    found = [{**i, "scope_text": scope_words(i["scope"], lang)} for i in await board.list(active_only=False)]
    return await page(
        request,
        "incidents.html",
        incidents=found,
        stats=await board.stats(),
        operator=await request.app[STORE].agent_role(agent) == "operator",
        channels=CHANNELS,
        models=list(terminal_models()),
        audit=await audit_trail(request.app[STORE], 20, target_prefix="incident:"),
    )


@routes.get("/console/incidents/{id}")
@agent_only
async def incident_page(request: web.Request) -> web.Response:
    """One incident: scope, evidence, the linked merchants and whether each was told."""
    incident = await request.app[BOARD].get(_id(request))
    agent, lang = await actor(request), (await get_session(request)).get("lang", "zh")
    incident["scope_text"] = scope_words(incident["scope"], lang)
    linked = [{**m, "contact_masked": mask_phone(m["contact"] or "")} for m in incident["linked"]]
    return await page(
        request, "incident.html", incident=incident, linked=linked, operator=await request.app[STORE].agent_role(agent) == "operator"
    )


@routes.post("/console/incidents")
@agent_only
@operator_only
async def post_incident(request: web.Request) -> web.StreamResponse:
    """Post a known outage from the form (errors come back as text on the page)."""
    text = incident_from_form(await request.post())
    incident = await request.app[BOARD].post(text, await actor(request), request.app[SETTINGS].incident_window_minutes)
    await flash(request, (await word(request, "incident_posted")).format(ticket=incident["ticket"]))
    raise web.HTTPFound(f"/console/incidents/{incident['id']}")


@routes.post("/console/incidents/{id}/confirm")
@agent_only
@operator_only
async def confirm_incident(request: web.Request) -> web.StreamResponse:
    """A proposal becomes an incident with the operator's texts; the merchants who
    reported it are linked."""
    text = incident_from_form(await request.post(), default_start=None)
    incident = await request.app[BOARD].confirm(_id(request), text, await actor(request), request.app[SETTINGS].incident_threshold)
    await flash(request, (await word(request, "incident_confirmed")).format(n=incident["merchants"]))
    raise web.HTTPFound(f"/console/incidents/{incident['id']}")


@routes.post("/console/incidents/{id}/dismiss")
@agent_only
@operator_only
async def dismiss_incident(request: web.Request) -> web.StreamResponse:
    """A proposal is not an incident."""
    await request.app[BOARD].dismiss(_id(request), await actor(request))
    await flash(request, await word(request, "incident_dismissed_ok"))
    raise web.HTTPFound("/console/incidents")


@routes.post("/console/incidents/{id}/close")
@agent_only
@operator_only
async def close_incident(request: web.Request) -> web.StreamResponse:
    """End an outage: each linked merchant gets one message; again: nothing is sent."""
    note = optional_text(dict(await request.post()), "note", 2000) or ""
    _, planned = await close(request, _id(request), note, await actor(request))
    await flash(request, (await word(request, "incident_closed")).format(n=planned))
    raise web.HTTPFound(f"/console/incidents/{_id(request)}")


def incident_from_form(form: MultiDictProxy, default_start: Optional[datetime] = None) -> IncidentText:
    """The incident form's fields, checked: regions and gateways comma-separated, channels
    and terminal models ticked, local times in the browser's zone."""
    zone = form_zone(dict(form))
    scope = parse_scope(
        {
            "regions": _split(form.get("region")),
            "gateways": _split(form.get("gateways")),
            "channels": [str(v) for v in form.getall("channels", [])],
            "terminal_models": [str(v) for v in form.getall("terminal_models", [])],
        }
    )
    fields = {"starts_at": form.get("starts_at") or None, "expected_end": form.get("expected_end") or None}
    starts_at = parse_time(fields, "starts_at", zone) or default_start
    expected_end = parse_time(fields, "expected_end", zone)
    if expected_end is not None and expected_end <= (starts_at or utcnow()):
        if starts_at:
            raise Invalid("expected_end must be after starts_at", "end_before_start")
        raise Invalid("expected_end must be in the future", "end_in_past")
    values = dict(form)
    return IncidentText(scope, plain_text(values, "message_zh"), plain_text(values, "message_en"), starts_at, expected_end)


def _split(value: Any) -> List[str]:
    # "all" / "全国" / blank: everyone (an empty list).
    parts = [part.strip() for part in str(value or "").replace("，", ",").split(",")]
    return [part for part in parts if part and part.lower() not in ("all", "全国")]


def scope_words(scope: Dict[str, List[str]], lang: str) -> str:
    """A scope in the console's words ("everyone" for an empty one)."""
    t = texts()[lang]
    table = regions()

    def named(dimension: str, value: str) -> str:
        # A region by its name in the console's language, the code after it ("深圳市 (4403)").
        name = (table.get(value) or {}).get(lang) if dimension == "regions" else None
        return f"{name} ({value})" if name else value

    parts = [f"{t['scope_' + d]}: {', '.join(named(d, x) for x in v)}" for d, v in scope.items() if v]
    return "; ".join(parts) or t["everyone"]

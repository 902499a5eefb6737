"""The agents' console: server-rendered pages (Jinja2, autoescaped), Chinese and English.

Login with an agent account (argon2 hashes); the session is an encrypted HttpOnly,
SameSite=Strict cookie; every form carries a CSRF token; failed logins are throttled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp_jinja2
import jinja2
import yaml
from aiohttp import web
from aiohttp_session import get_session, new_session, setup as setup_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from markupsafe import Markup

from support_desk import cases
from support_desk.accounts import verify_password
from support_desk.attachments import read_attachment
from support_desk.canned import canned_for_case
from support_desk.api import RELAY, SETTINGS, STORE, escalation_id
from support_desk.incident_api import BOARD
from support_desk.history import case_history, ordinal, repeat_counts
from common.hours import BusinessHours, business_minutes_between
from common.privacy import mask_phone
from support_desk.queue_filters import parse_queue_filters
from support_desk.store import Conflict, NotFound, incident_id_of, utcnow, wecom_agent
from support_desk.validation import Invalid, optional_text, required_text

HERE = Path(__file__).parent
STATIC = HERE / "static"
_STATIC_NAME = re.compile(r"[a-z0-9_-]+\.(?:js|css)")
routes = web.RouteTableDef()
LANGUAGES = ("zh", "en")
LOGIN_ATTEMPTS, LOGIN_WINDOW_SECONDS = 5, 300
LOGIN_FAILURES = web.AppKey("login_failures", dict)


@lru_cache(maxsize=1)
def texts() -> Dict[str, Dict[str, str]]:
    """The console's words per language (``console_text.yml``)."""
    return yaml.safe_load((HERE / "console_text.yml").read_text(encoding="utf-8"))


def moment(value: Optional[str], style: str = "datetime") -> Markup:
    """A stored time as ``<time>``: UTC text without JavaScript; ``static/time.js``
    rewrites it in the agent's own time zone."""
    if not value:
        return Markup("—")
    at = datetime.fromisoformat(value).astimezone(timezone.utc)
    text = at.strftime("%m-%d %H:%M UTC" if style == "time" else "%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}" data-local="{}">{}</time>').format(at.isoformat(), style, text)


# Jinja filters of the console's templates.
TEMPLATE_FILTERS: Dict[str, Callable[..., str]] = {"moment": moment, "ordinal": ordinal}


def session_key(secret: str) -> bytes:
    """32 key bytes derived from DESK_SECRET_KEY (aiohttp-session makes the Fernet key)."""
    return hashlib.sha256(secret.encode()).digest()


def setup_console(app: web.Application, secret_key: str) -> None:
    """Add sessions, templates and the console routes to the desk app."""
    setup_session(
        app,
        EncryptedCookieStorage(
            session_key(secret_key),
            cookie_name="desk_session",
            httponly=True,
            samesite="Strict",
            max_age=8 * 3600,
        ),
    )
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        filters=TEMPLATE_FILTERS,
    )
    app.router.add_routes(routes)
    app[LOGIN_FAILURES] = defaultdict(deque)


async def page(request: web.Request, template: str, **context: Any) -> web.Response:
    """Render a page with the session's language, agent, CSRF token and flash message."""
    session = await get_session(request)
    lang = session.get("lang", "zh")
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    flash = session.pop("flash", None)
    agent = session.get("agent")
    # On every page: the agent's claimed cases where a merchant waits on them too long.
    reminders = await request.app[STORE].waiting_on(agent, request.app[SETTINGS].idle_reminder_minutes) if agent else []
    # And the incidents the desk proposes from the merchants' reports, for an operator to decide.
    proposals = await request.app[BOARD].proposals() if agent else []
    return aiohttp_jinja2.render_template(
        template,
        request,
        {
            "t": texts()[lang],
            "lang": lang,
            "agent": session.get("agent"),
            "csrf": session["csrf"],
            "flash": flash[0] if flash else None,
            "flash_error": flash[1] if flash else False,
            "reminders": reminders,
            "proposals": proposals,
            # The retraining page's link is for operators only.
            "nav_operator": bool(agent) and await request.app[STORE].agent_role(str(agent)) == "operator",
            **context,
        },
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def agent_only(handler: Handler) -> Handler:
    """Logged-in agents only; forms must also carry the session's CSRF token."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = await get_session(request)
        if not session.get("agent"):
            # Read by the case page's scripts: JSON, not a redirect to the login page.
            if request.path.startswith("/console/cases/") and request.path.endswith("/canned"):
                return web.json_response({"error": "login required"}, status=401)
            raise web.HTTPFound("/console/login")
        if request.method == "POST":
            await check_csrf(request)
        try:
            return await handler(request)
        except Invalid as problem:
            await flash(request, await invalid_text(request, problem), error=True)
            raise web.HTTPFound(back(request)) from None
        except Conflict as problem:
            await flash(request, str(problem), error=True)
            raise web.HTTPFound(back(request)) from None
        except NotFound:
            raise web.HTTPNotFound(text="not found") from None

    return wrapped


async def check_csrf(request: web.Request) -> None:
    """The form's token must be the session's (constant-time comparison)."""
    session = await get_session(request)
    form = await request.post()
    supplied = str(form.get("csrf", ""))
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise web.HTTPForbidden(text=texts()[session.get("lang", "zh")]["bad_request"])


async def flash(request: web.Request, message: str, error: bool = False) -> None:
    """A one-time message for the next page."""
    (await get_session(request))["flash"] = (message, error)


async def invalid_text(request: web.Request, problem: Invalid) -> str:
    """A form error in the agent's language (its English message when the console has no words for it)."""
    words = texts()[(await get_session(request)).get("lang", "zh")]
    template = words.get(f"invalid_{problem.key}") if problem.key else None
    if template is None:
        return str(problem)
    params = dict(problem.params)
    if "field" in params:
        field = str(params["field"])
        params["field"] = words.get(f"field_{field}") or words.get(field) or field
    return template.format(**params)


async def word(request: web.Request, key: str) -> str:
    """One console word in the session's language."""
    return texts()[(await get_session(request)).get("lang", "zh")][key]


@routes.get("/console/static/{name}")
async def static_file(request: web.Request) -> web.StreamResponse:
    """The console's own scripts and styles (``support_desk/static/``, no build step)."""
    name = request.match_info["name"]
    path = STATIC / name
    if not _STATIC_NAME.fullmatch(name) or not path.is_file():
        raise web.HTTPNotFound(text="not found")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


# --- login ----------------------------------------------------------------------------


@routes.get("/console/login")
async def login_page(request: web.Request) -> web.Response:
    """The login form."""
    return await page(request, "login.html")


@routes.post("/console/login")
async def login(request: web.Request) -> web.StreamResponse:
    """Check the password; a fresh session (and CSRF token) on success."""
    await check_csrf(request)
    form = await request.post()
    username = str(form.get("username", ""))[:64]
    table = request.app[LOGIN_FAILURES]
    now = time.monotonic()
    if len(table) > 10_000:  # bounded memory: forget the keys whose window has passed
        for key in [k for k, v in table.items() if not v or now - v[-1] > LOGIN_WINDOW_SECONDS]:
            del table[key]
    failures: Deque[float] = table[(request.remote, username)]
    while failures and now - failures[0] > LOGIN_WINDOW_SECONDS:
        failures.popleft()
    if len(failures) >= LOGIN_ATTEMPTS:
        await flash(request, await word(request, "login_throttled"), error=True)
        raise web.HTTPFound("/console/login")
    stored = await request.app[STORE].agent_password_hash(username)
    if not verify_password(stored, str(form.get("password", ""))):
        failures.append(now)
        await flash(request, await word(request, "login_failed"), error=True)
        raise web.HTTPFound("/console/login")
    lang = (await get_session(request)).get("lang", "zh")
    session = await new_session(request)  # a new identity: no session fixation
    session.update(agent=username, lang=lang, csrf=secrets.token_urlsafe(24))
    raise web.HTTPFound("/console")


@routes.post("/console/logout")
@agent_only
async def logout(request: web.Request) -> web.StreamResponse:
    """End the session; with cases still claimed, first ask what becomes of them.

    ``then=release`` gives them back to the queue, ``then=keep`` leaves them claimed.
    """
    session = await get_session(request)
    agent = session["agent"]
    held = await request.app[STORE].claimed_by(agent)
    then = str((await request.post()).get("then", ""))
    if held and then not in ("release", "keep"):
        return await page(request, "logout.html", held=held)
    if then == "release":
        for case in held:
            await request.app[STORE].release(case["id"], agent)
    session.invalidate()
    raise web.HTTPFound("/console/login")


@routes.get("/console/lang/{lang}")
async def switch_language(request: web.Request) -> web.StreamResponse:
    """Chinese or English pages."""
    lang = request.match_info["lang"]
    if lang in LANGUAGES:
        (await get_session(request))["lang"] = lang
    raise web.HTTPFound(back(request))


# --- queue and cases ------------------------------------------------------------------


def sla_state(case: Dict[str, Any], sla_minutes: Dict[str, int], hours: BusinessHours, now: datetime) -> str:
    """``done`` once answered, else ``ok`` / ``due`` (last 20 %) / ``breached``, counting
    business minutes only: the clock of the reply time promised to the merchant."""
    if case["first_reply_at"] or case["status"] == "resolved":
        return "done"
    limit = sla_minutes.get(case["priority"], sla_minutes.get("normal", 120))
    waited = business_minutes_between(datetime.fromisoformat(case["created_at"]), now, hours)
    if waited >= limit:
        return "breached"
    return "due" if waited >= 0.8 * limit else "ok"


@routes.get("/console")
@agent_only
async def queue(request: web.Request) -> web.Response:
    """Escalations found by search (ticket, merchant number, SN, phone) and filters
    (status, priority, age), with an SLA badge and a repeat marker, a page at a time
    (newer / older links keep the filters); a bad filter value gets a message beside its
    field (400) instead of a list it did not filter."""
    filters = parse_queue_filters(request.query)
    if filters.errors:
        response = await page(request, "queue.html", cases=None, filters=filters)
        response.set_status(400)
        return response
    store, settings, now = request.app[STORE], request.app[SETTINGS], utcnow()
    found = await store.escalation_page(
        status=filters.status,
        priority=filters.priority,
        search=filters.search,
        created_before=now - timedelta(minutes=filters.older_than) if filters.older_than else None,
        cursor=filters.cursor,
    )
    repeats = await repeat_counts(store, settings, found.items)
    rows = [
        {
            **case,
            "age_minutes": int((now - datetime.fromisoformat(case["created_at"])).total_seconds() // 60),
            "sla": sla_state(case, settings.sla_minutes, settings.business_hours, now),
            "contact_masked": mask_phone(case["contact"] or ""),
            "repeat": repeats.get(case["id"]),
        }
        for case in found.items
    ]
    links = {
        "newer": filters.page_link(found.prev_cursor) if found.prev_cursor else None,
        "older": filters.page_link(found.next_cursor) if found.next_cursor else None,
    }
    return await page(request, "queue.html", cases=rows, filters=filters, repeat_days=settings.repeat_days, pages=links)


@routes.get("/console/cases/{id}")
@agent_only
async def case_page(request: web.Request) -> web.Response:
    """One case: details, diagnostics checklist, live transcript, reply, claim, resolve."""
    store = request.app[STORE]
    case = await cases.case_with_live_transcript(store, request.app[RELAY], _id(request))
    t = texts()[(await get_session(request)).get("lang", "zh")]
    settings = request.app[SETTINGS]
    agent = (await get_session(request))["agent"]
    return await page(
        request,
        "case.html",
        case={**case, "transcript": with_delivery_text(case, t)},
        platform=platform_text(case, t),
        sla=sla_state(case, settings.sla_minutes, settings.business_hours, utcnow()),
        history=await case_history(store, settings, case),
        roles_json=json.dumps({r: t[f"role_{r}"] for r in ("user", "bot", "agent")}, ensure_ascii=False),
        others=[name for name in await store.agent_names() if name != case["claimed_by"]],
        mine=case["status"] == "claimed" and case["claimed_by"] == agent,
        resolved_by_name=await store.display_name(case["resolved_by"]) if case["resolved_by"] else None,
    )


def with_delivery_text(case: Dict[str, Any], t: Dict[str, str]) -> List[Dict[str, Any]]:
    """The transcript with each message's delivery state in the agent's words."""
    lines = []
    for message in case["transcript"]:
        state = message["delivery"]
        text = t[f"delivery_{state}"].format(channel=case["channel"], reason=message.get("delivery_reason") or "") if state else ""
        if state == "waiting" and message["delivery_error"]:
            text += f" ({message['delivery_error']})"
        lines.append({**message, "delivery_text": text})
    return lines


def platform_text(case: Dict[str, Any], t: Dict[str, str]) -> Dict[str, str]:
    """What the case page says about the WeCom session: the pool, or the WeCom agent who
    answers in the WeCom client (then ``reply_blocked`` replaces the reply box); for an
    outage's shared case, that its merchants are told from the incident's page."""
    incident = incident_id_of(case)
    if incident is not None:
        return {"session": "", "reply_blocked": t["reply_incident"].format(ticket=case["ticket"]), "incident": str(incident)}
    in_wecom = wecom_agent(case)
    if in_wecom is not None:
        return {"session": t["wecom_agent"].format(agent=in_wecom), "reply_blocked": t["reply_in_wecom"].format(agent=in_wecom)}
    if case["status"] == "open" and case.get("platform_session") == "pool":
        return {"session": t["wecom_pool"], "reply_blocked": ""}
    return {"session": "", "reply_blocked": ""}


@routes.get("/console/attachments/{id}")
async def attachment(request: web.Request) -> web.Response:
    """A picture a merchant sent, for logged-in agents only (404 for everyone else: not
    even whether it exists), with its stored type and no sniffing."""
    if not (await get_session(request)).get("agent"):
        raise web.HTTPNotFound(text="not found")
    found = await read_attachment(request.app[STORE], _id(request))
    if found is None:
        raise web.HTTPNotFound(text="not found")
    content_type, data = found
    return web.Response(
        body=data,
        headers={
            "Content-Type": content_type,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
            # A picture, never a page: nothing in it may run or load anything.
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


@routes.get("/console/cases/{id}/canned")
@agent_only
async def case_canned(request: web.Request) -> web.Response:
    """The canned replies for this case in the merchant's language (JSON, session auth)."""
    case = await request.app[STORE].get_escalation(_id(request))
    return web.json_response({"language": case["language"], "canned": await canned_for_case(request.app[STORE], case)})


@routes.post("/console/cases/{id}/claim")
@agent_only
async def claim(request: web.Request) -> web.StreamResponse:
    """Take the case."""
    agent = (await get_session(request))["agent"]
    await cases.claim(request.app[STORE], request.app[RELAY], request.app[SETTINGS], _id(request), agent)
    await flash(request, await word(request, "claimed_ok"))
    raise web.HTTPFound(f"/console/cases/{_id(request)}")


@routes.post("/console/cases/{id}/reply")
@agent_only
async def reply(request: web.Request) -> web.StreamResponse:
    """Send a reply; if Rasa is down the reply is kept and the agent is told."""
    form = await request.post()
    text = required_text(dict(form), "text", 4000)
    agent = (await get_session(request))["agent"]
    result = await cases.reply(request.app[STORE], request.app[RELAY], _id(request), text, agent)
    # Say plainly whether the merchant will see it: on a REST conversation it only waits;
    # on a channel that reports, it is the channel's to send.
    delivery = result.record["delivery"]
    outcome = {"delivered": "sent", "not_pushable": "sent_not_pushable", "sending": "sent_sending", "held": "delivery_held"}.get(
        delivery, "rasa_down"
    )
    channel = (await request.app[STORE].get_escalation(_id(request)))["channel"]
    await flash(
        request,
        (await word(request, outcome)).format(channel=channel, reason=result.record.get("delivery_reason") or ""),
        error=outcome in ("rasa_down", "delivery_held"),
    )
    raise web.HTTPFound(f"/console/cases/{_id(request)}")


@routes.post("/console/cases/{id}/notes")
@agent_only
async def add_note(request: web.Request) -> web.StreamResponse:
    """A private note: kept on the case, never sent to the merchant."""
    text = required_text(dict(await request.post()), "text", 4000)
    await request.app[STORE].add_note(_id(request), text, (await get_session(request))["agent"])
    await flash(request, await word(request, "note_saved"))
    raise web.HTTPFound(f"/console/cases/{_id(request)}")


@routes.post("/console/cases/{id}/release")
@agent_only
async def release(request: web.Request) -> web.StreamResponse:
    """Give the case back to the queue."""
    await request.app[STORE].release(_id(request), (await get_session(request))["agent"])
    await flash(request, await word(request, "released_ok"))
    raise web.HTTPFound(f"/console/cases/{_id(request)}")


@routes.post("/console/cases/{id}/transfer")
@agent_only
async def transfer(request: web.Request) -> web.StreamResponse:
    """Hand the case to another agent."""
    to_agent = required_text(dict(await request.post()), "to", 64)
    await cases.transfer(
        request.app[STORE], request.app[RELAY], request.app[SETTINGS], _id(request), (await get_session(request))["agent"], to_agent
    )
    await flash(request, (await word(request, "transferred_ok")).format(agent=to_agent))
    raise web.HTTPFound(f"/console/cases/{_id(request)}")


@routes.post("/console/cases/{id}/handback")
@agent_only
async def hand_back(request: web.Request) -> web.StreamResponse:
    """Send the case back to the bot, which tells the merchant."""
    form = dict(await request.post())
    result = await cases.hand_back(
        request.app[STORE],
        request.app[RELAY],
        request.app[SETTINGS],
        _id(request),
        (await get_session(request))["agent"],
        optional_text(form, "note", 2000) or "",
    )
    await flash(request, await word(request, "handed_back_ok" if result.delivered else "resolved_pending"), error=not result.delivered)
    raise web.HTTPFound(f"/console/cases/{_id(request)}")


@routes.post("/console/cases/{id}/resolve")
@agent_only
async def resolve(request: web.Request) -> web.StreamResponse:
    """Close the case with a note and category; the bot takes over again."""
    form = dict(await request.post())
    result = await cases.resolve(
        request.app[STORE],
        request.app[RELAY],
        request.app[SETTINGS],
        _id(request),
        required_text(form, "note", 2000),
        optional_text(form, "category", 64),
        (await get_session(request))["agent"],
    )
    await flash(request, await word(request, "resolved_ok" if result.delivered else "resolved_pending"), error=not result.delivered)
    raise web.HTTPFound(f"/console/cases/{_id(request)}")


# --- canned replies and the agent's own name --------------------------------------------


@routes.get("/console/canned")
@agent_only
async def canned_page(request: web.Request) -> web.Response:
    """The replies agents wrote, and the form to add one."""
    return await page(request, "canned.html", canned=await request.app[STORE].list_canned())


@routes.post("/console/canned")
@agent_only
async def add_canned(request: web.Request) -> web.StreamResponse:
    """Keep a reply for later (title, text, the merchants' language it is for)."""
    form = dict(await request.post())
    language = str(form.get("language", ""))
    if language not in LANGUAGES:
        raise Invalid("language must be zh or en")
    await request.app[STORE].add_canned(
        language, required_text(form, "title", 80), required_text(form, "text", 4000), (await get_session(request))["agent"]
    )
    await flash(request, await word(request, "canned_saved"))
    raise web.HTTPFound("/console/canned")


@routes.post("/console/canned/{id}/delete")
@agent_only
async def delete_canned(request: web.Request) -> web.StreamResponse:
    """Remove an agent-written reply."""
    await request.app[STORE].delete_canned(_id(request))
    await flash(request, await word(request, "canned_deleted"))
    raise web.HTTPFound("/console/canned")


@routes.get("/console/profile")
@agent_only
async def profile_page(request: web.Request) -> web.Response:
    """The agent's own display name (the name merchants see)."""
    agent = (await get_session(request))["agent"]
    return await page(request, "profile.html", display_name=await request.app[STORE].display_name(agent))


@routes.post("/console/profile")
@agent_only
async def set_profile(request: web.Request) -> web.StreamResponse:
    """Change the agent's own display name (blank: merchants see the username)."""
    agent = (await get_session(request))["agent"]
    name = optional_text(dict(await request.post()), "display_name", 64)
    await request.app[STORE].set_display_name(agent, name)
    await flash(request, await word(request, "profile_saved"))
    raise web.HTTPFound("/console/profile")


# --- stats (the incident pages: support_desk.incident_console) --------------------------------------------------------------


@routes.get("/console/stats")
@agent_only
async def stats_page(request: web.Request) -> web.Response:
    """Charts: escalations per day, bot-solved vs escalated, fixes per step, median reply."""
    stats = await request.app[STORE].stats()
    t = texts()[(await get_session(request)).get("lang", "zh")]
    return await page(
        request,
        "stats.html",
        stats=stats,
        per_day=[(day[5:], n) for day, n in stats["escalations_per_day"].items()],
        solved=[(t["solved_by_bot"], stats["solved_by_bot"]), (t["escalated"], stats["escalated"])],
        steps=[(t[f"step_{s}"], n) for s, n in stats["fixed_by_step"].items()],
    )


def form_zone(form: Dict[str, Any]) -> ZoneInfo:
    """The IANA time zone a form's local times are in (``timezone`` field, UTC if absent)."""
    name = str(form.get("timezone") or "UTC")[:64]
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone: {name!r}") from None


def _id(request: web.Request) -> int:
    return escalation_id(request)  # the API's rule: ASCII digits that fit a 64-bit integer


def back(request: web.Request) -> str:
    """Where a form goes back to: the Referer's path on this site, else the queue.

    Never another site: a Referer is whatever the browser (or an attacker's page) sent.
    """
    referer = urlsplit(request.headers.get("Referer", ""))
    same_site = referer.scheme in ("http", "https") and referer.netloc == request.host
    path = (referer.path + (f"?{referer.query}" if referer.query else "")) if same_site else ""
    return path if path.startswith("/console") and not path.startswith("//") else "/console"

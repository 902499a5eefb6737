"""The NLU inbox on the console (``/console/nlu``, operators only) and in the API
(``/api/nlu/inbox``, bearer token), and the case page's "the bot misunderstood this"
button (any agent). The inbox itself: ``support_desk.nlu_inbox``."""

from __future__ import annotations

from typing import Any, Dict

from aiohttp import web
from aiohttp_session import get_session

from support_desk.api import read_json
from support_desk.console import _id, agent_only, back, flash, page, word
from support_desk.incident_api import API_ACTOR
from support_desk.incident_console import actor, operators_only
from support_desk.nlu_inbox import INBOX, ORDERS, STATUSES, HeldOut, StaleVersion
from support_desk.pagination import parse_limit
from support_desk.validation import Invalid

routes = web.RouteTableDef()
operator_only = operators_only("nlu_operators_only")
DECISIONS = ("label", "out_of_scope", "ignore")


def _choice(query: Any, name: str, choices: tuple) -> str:
    value = query.get(name) or choices[0]
    if value not in choices:
        raise Invalid(f"{name} must be one of {', '.join(choices)}")
    return str(value)


def _version(value: Any) -> int:
    """The version the client last saw: a positive integer, else ``Invalid``."""
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**31:
        raise Invalid("version must be the entry's version (a positive integer)", "nlu_version")
    return int(text)


@routes.get("/console/nlu")
@agent_only
@operator_only
async def inbox_page(request: web.Request) -> web.Response:
    """The inbox: one status at a time, newest or most frequent first, a form per entry."""
    inbox = request.app[INBOX]
    status, order = _choice(request.query, "status", STATUSES), _choice(request.query, "order", ORDERS)
    found = await inbox.page(status, order, request.query.get("cursor"), parse_limit(request.query.get("limit")))
    return await page(
        request,
        "nlu.html",
        items=found["items"],
        next_cursor=found["next_cursor"],
        later_page="cursor" in request.query,
        status=status,
        order=order,
        intents=inbox.intents(),
    )


@routes.post("/console/nlu/{id}/label")
@agent_only
@operator_only
async def label_from_form(request: web.Request) -> web.StreamResponse:
    """Confirm or correct the intent, or mark out of scope / ignore; back to the list."""
    form = await request.post()
    decision = str(form.get("decision", "label"))
    if decision not in DECISIONS:
        raise Invalid("decision must be label, out_of_scope or ignore")
    try:
        entry = await request.app[INBOX].label(
            _id(request),
            _version(form.get("version")),
            await actor(request),
            intent=str(form.get("intent", "")) if decision == "label" else None,
            action=None if decision == "label" else decision,
        )
    except StaleVersion:
        await flash(request, await word(request, "nlu_stale"), error=True)
        raise web.HTTPFound(_back_to_list(request)) from None
    except HeldOut:
        await flash(request, await word(request, "nlu_heldout"), error=True)
        raise web.HTTPFound(_back_to_list(request)) from None
    outcome = "nlu_in_training" if entry["in_training"] else f"nlu_done_{entry['status']}"
    await flash(request, (await word(request, outcome)).format(intent=entry["label"] or ""))
    raise web.HTTPFound(_back_to_list(request))


def _back_to_list(request: web.Request) -> str:
    # The list the form was on (its status, order and page), never another site's address.
    path = back(request)
    return path if path.startswith("/console/nlu") else "/console/nlu"


@routes.post("/console/cases/{id}/messages/{message_id}/flag")
@agent_only
async def flag_message(request: web.Request) -> web.StreamResponse:
    """Any agent: the bot misunderstood this merchant message (it joins the NLU inbox)."""
    raw = request.match_info["message_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound(text="not found")
    await request.app[INBOX].flag(_id(request), int(raw), str((await get_session(request))["agent"]))
    await flash(request, await word(request, "nlu_flagged_ok"))
    raise web.HTTPFound(f"/console/cases/{_id(request)}")


# --- API -----------------------------------------------------------------------------


@routes.get("/api/nlu/inbox")
async def api_inbox(request: web.Request) -> web.Response:
    """One page of the inbox (``status``, ``order``, ``limit``, ``cursor``)."""
    query = request.query
    found = await request.app[INBOX].page(
        _choice(query, "status", STATUSES), _choice(query, "order", ORDERS), query.get("cursor"), parse_limit(query.get("limit"))
    )
    return web.json_response(found)


@routes.post("/api/nlu/inbox/{id}/label")
async def api_label(request: web.Request) -> web.Response:
    """``{"intent", "version"}`` or ``{"action": "out_of_scope" | "ignore", "version"}``."""
    body: Dict[str, Any] = await read_json(request)
    intent, action = body.get("intent"), body.get("action")
    if (intent is None) == (action is None):
        raise Invalid("send either intent or action (out_of_scope or ignore)")
    if not isinstance(intent if intent is not None else action, str):
        raise Invalid("intent and action must be strings")
    entry = await request.app[INBOX].label(_id(request), _version(body.get("version")), API_ACTOR, intent=intent, action=action)
    return web.json_response(entry)

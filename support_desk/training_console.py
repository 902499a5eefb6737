"""Retraining's page and API (issue 18; ``support_desk.training`` does the work).

Console: ``/console/training``, operators only (agents get 403): Train, the job in progress
(the page reloads itself every few seconds while one runs), the history with the figures
side by side, Rollback. API (bearer token): ``POST /api/training`` (202, 409 while one
runs), ``GET /api/training/{id}``, ``POST /api/training/rollback``. Every start, switch,
refusal, failure and rollback is in the audit log.
"""

from __future__ import annotations

from aiohttp import web

from support_desk.api import STORE, read_json
from support_desk.console import _id, agent_only, flash, page, word
from support_desk.incident_console import actor, operator_only
from support_desk.audit import audit_trail
from support_desk.store import Conflict
from support_desk.training import TRAINING, figure_rows
from support_desk.validation import Invalid

api_routes = web.RouteTableDef()
console_routes = web.RouteTableDef()
API_ACTOR = "api"


@api_routes.post("/api/training")
async def start_training(request: web.Request) -> web.Response:
    """Start a training (202 with the job); 409 while one runs. ``{"full": true}``: a full
    training even where a fine-tuning would do."""
    body = await read_json(request) if request.can_read_body else {}
    full = body.get("full", False)
    if not isinstance(full, bool):
        raise Invalid("full must be true or false")
    job = await request.app[TRAINING].start(API_ACTOR, full=full)
    return web.json_response(job, status=202)


@api_routes.get("/api/training/{id}")
async def get_training(request: web.Request) -> web.Response:
    """One job: state, progress, both models' figures, the error."""
    return web.json_response(await request.app[TRAINING].get(_id(request)))


@api_routes.post("/api/training/rollback")
async def rollback_training(request: web.Request) -> web.Response:
    """The model before the last switch back on every Rasa (409 when there is none)."""
    return web.json_response(await request.app[TRAINING].rollback(API_ACTOR))


@console_routes.get("/console/training")
@agent_only
@operator_only
async def training_page(request: web.Request) -> web.Response:
    """The current job with its progress, the history, Train and Rollback."""
    jobs = request.app[TRAINING]
    history = await jobs.history(20)
    trail = await audit_trail(request.app[STORE], 20, target_prefix="training:")
    return await page(
        request,
        "training.html",
        active=await jobs.active(),
        history=[{**job, "rows": figure_rows(job)} for job in history],
        running_model=await jobs.running_model(),
        can_roll_back=await jobs.rollback_target() is not None,
        audit=trail,
    )


@console_routes.post("/console/training")
@agent_only
@operator_only
async def train(request: web.Request) -> web.StreamResponse:
    """Train (a form error while another training runs)."""
    full = (await request.post()).get("full") == "1"
    try:
        job = await request.app[TRAINING].start(await actor(request), full=full)
    except Conflict:
        await flash(request, await word(request, "training_busy"), error=True)
        raise web.HTTPFound("/console/training") from None
    await flash(request, (await word(request, "training_started")).format(id=job["id"]))
    raise web.HTTPFound("/console/training")


@console_routes.post("/console/training/rollback")
@agent_only
@operator_only
async def rollback(request: web.Request) -> web.StreamResponse:
    """Put the previous model back on every Rasa."""
    job = await request.app[TRAINING].rollback(await actor(request))
    await flash(request, (await word(request, "training_rolled_back_ok")).format(id=job["id"]))
    raise web.HTTPFound("/console/training")

"""The console's live stream: ``GET /console/events``, server-sent events of the live hub.

Each committed change of a case reaches every open console page as one event
(``event: case``, ``data: {"type": "case", "id", "change"}``); the page then reads what
it shows again (``static/live.js``). A comment line every ``HEARTBEAT`` seconds keeps
proxies from closing an idle stream and lets the desk notice a browser that left. The
stream ends when the hub drops it (it fell behind, or the desk shuts down); the browser
reconnects by itself and re-reads its state, so nothing is missed.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from aiohttp_session import get_session

from support_desk import cases
from support_desk.api import RELAY, STORE, escalation_id
from support_desk.console import platform_text, texts, with_delivery_text

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
HEARTBEAT = web.AppKey("live_heartbeat_seconds", float)
HEARTBEAT_SECONDS = 15.0
# How soon a browser tries again after the stream ended (EventSource's ``retry``).
RECONNECT_MS = 1000


async def _agent(request: web.Request) -> str:
    session = await get_session(request)
    return session.get("agent") or ""


@routes.get("/console/events")
async def console_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events of every case change, for a logged-in agent (401 JSON otherwise)."""
    if not await _agent(request):
        return web.json_response({"error": "login required"}, status=401)
    hub = request.app[STORE].hub
    heartbeat = request.app.get(HEARTBEAT, HEARTBEAT_SECONDS)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx in front must not hold the events back
        }
    )
    async with hub.subscribe() as queue:
        await response.prepare(request)
        try:
            await response.write(f"retry: {RECONNECT_MS}\n: connected\n\n".encode())
            while hub.subscribed(queue):
                try:
                    event = await asyncio.wait_for(queue.get(), heartbeat)
                except asyncio.TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                if event is None:
                    break
                await response.write(f"event: case\ndata: {json.dumps(event)}\n\n".encode())
        except (ConnectionResetError, RuntimeError):
            # The browser went away mid-write (aiohttp raises RuntimeError once the
            # transport is closed): nothing to tell it.
            pass
    return response


@routes.get("/console/live/cases/{id}")
async def live_case(request: web.Request) -> web.Response:
    """What a case page shows that changes (status, transcript), from the desk's records;
    ``?reread=1`` (after a reconnect) first copies in what the Rasa tracker has and the
    desk may have missed while it was down."""
    if not await _agent(request):
        return web.json_response({"error": "login required"}, status=401)
    if request.query.get("reread"):
        case = await cases.case_with_live_transcript(request.app[STORE], request.app[RELAY], escalation_id(request))
    else:
        case = await request.app[STORE].get_escalation(escalation_id(request))
    lang = (await get_session(request)).get("lang", "zh")
    return web.json_response(
        {
            "status": case["status"],
            "status_text": texts()[lang].get(case["status"], case["status"]),
            # The same lines as the server-rendered page: delivery state in the agent's words.
            "transcript": with_delivery_text(case, texts()[lang]),
            # The WeCom session (pool, or a WeCom agent: then the reply box is closed).
            **platform_text(case, texts()[lang]),
        }
    )

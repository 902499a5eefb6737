"""A double of the support desk's incident API (the bot-side contract), on 127.0.0.1.

It enforces what the real desk promises and requires: the bearer token, the required
fields and their types (400 otherwise), 404 for an incident that is not active, 201 the
first time a sender is linked and 200 after, ``wants_person`` / ``subscribed`` only ever
going from false to true, 202 for a report. ``POST /api/escalations`` answers like the
desk so a fallback escalation can be seen.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "incident-desk-token"
LINK_FIELDS = {
    "merchant_id": str,
    "terminal_serial": str,
    "terminal_model": str,
    "region": str,
    "contact": str,
    "summary": str,
}
REPORT_FIELDS = {"region": str, "terminal_model": str, "merchant_id": str, "answer": str}


def incident(id: int = 7, scope: Optional[Dict[str, Any]] = None, **fields: Any) -> Dict[str, Any]:
    """An incident as ``GET /api/incidents`` lists it."""
    full = {"regions": [], "channels": [], "gateways": [], "terminal_models": [], **(scope or {})}
    return {
        "id": id,
        "status": "active",
        "scope": full,
        "message": {"zh": "银联网关故障，刷卡暂时失败。", "en": "The card gateway is down."},
        "starts_at": "2026-11-25T10:05:00+08:00",
        "expected_end": "2099-11-25T12:00:00+08:00",
        "ended_at": None,
        "region": (full["regions"] or ["all"])[0],  # the legacy field
        "ticket": f"INC-{id:04d}",
        "merchants": 0,
        **fields,
    }


def problem(body: Any, required: Dict[str, Any], optional: Dict[str, Any]) -> Optional[str]:
    """What is wrong with a body, None when it follows the contract."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    for name, kind in required.items():
        if not isinstance(body.get(name), kind) or body.get(name) == "":
            return f"{name} is required"
    for name, kind in optional.items():
        if name in body and not isinstance(body[name], kind):
            return f"{name} has the wrong type"
    if body["language"] not in ("zh", "en"):
        return "language must be zh or en"
    return None


class IncidentDesk:
    """Start with ``await desk.start()``; ``incidents`` is what the board lists."""

    def __init__(self, incidents: Optional[List[Dict[str, Any]]] = None) -> None:
        self.incidents = list(incidents or [])
        self.closed_for_links: set = set()  # listed, but over by the time a link arrives
        self.links: Dict[Tuple[int, str], Dict[str, Any]] = {}
        self.link_calls: List[Tuple[int, Dict[str, Any], int]] = []
        self.reports: List[Dict[str, Any]] = []
        self.escalations: List[Dict[str, Any]] = []
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/incidents", self._list)
        app.router.add_post("/api/incidents/reports", self._report)
        app.router.add_post("/api/incidents/{id}/merchants", self._link)
        app.router.add_post("/api/escalations", self._escalate)
        self.server = TestServer(app, host="127.0.0.1")

    async def start(self) -> str:
        """Listen on a free loopback port; returns the base URL."""
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"incidents": [i for i in self.incidents if i["status"] == "active"]})

    async def _report(self, request: web.Request) -> web.Response:
        body = await request.json()
        error = problem(body, {"sender_id": str, "channel": str, "language": str, "kind": str}, REPORT_FIELDS)
        if error is None and body["kind"] not in ("reported", "server_status_failed"):
            error = "kind must be reported or server_status_failed"
        if error is None and len(body.get("answer") or "") > 500:
            error = "answer is longer than 500 characters"
        if error:
            return web.json_response({"error": error}, status=400)
        self.reports.append(body)
        return web.json_response({"accepted": True}, status=202)

    async def _link(self, request: web.Request) -> web.Response:
        incident_id = int(request.match_info["id"])
        body = await request.json()
        error = problem(
            body,
            {"sender_id": str, "channel": str, "language": str, "wants_person": bool, "subscribed": bool},
            LINK_FIELDS,
        )
        if error:
            return web.json_response({"error": error}, status=400)
        found = next((i for i in self.incidents if i["id"] == incident_id and i["status"] == "active"), None)
        if found is None or incident_id in self.closed_for_links:
            self.link_calls.append((incident_id, body, 404))
            return web.json_response({"error": "incident not active"}, status=404)
        key = (incident_id, body["sender_id"])
        before = self.links.get(key)
        merchant = {**(before or {}), **body}
        if before:  # the flags only ever go from false to true
            merchant["wants_person"] = before["wants_person"] or body["wants_person"]
            merchant["subscribed"] = before["subscribed"] or body["subscribed"]
        self.links[key] = merchant
        status = 200 if before else 201
        self.link_calls.append((incident_id, body, status))
        return web.json_response({"incident_id": incident_id, "ticket": found["ticket"], "merchant": merchant}, status=status)

    async def _escalate(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.escalations.append(body)
        return web.json_response(
            {**body, "id": len(self.escalations), "status": "open", "expected_reply_by": "2099-11-25T11:00:00+08:00"}, status=201
        )

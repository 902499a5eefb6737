"""A recording stand-in for the desk's ``POST /api/channel/reports`` that checks the
channel->desk contract strictly: the bearer token (401), a JSON body of 1..200 reports
(400), every field's type and range, ``reason`` when held; a report that breaks the
contract is rejected on its own (200 with its index and the problem, kept in
``refusals``) and the others are taken; a ``report_id`` seen before is ignored, as the
real desk does. Only for the channel tests until the desk side of the
contract is merged; it is not the desk. Other paths answer 404 (the event broker's and
the outbox's posts are not what these tests look at).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from aiohttp import web

from tests.local_http import serve_in_thread

COMMON = {"kind": str, "report_id": str, "sender_id": str, "channel": str}
KINDS = {
    "delivery": {"desk_message_id": (int, type(None)), "text": str, "state": str},
    "agent_message": {"text": str, "msgid": str},
    "session": {"state": int, "servicer_userid": (str, type(None))},
}


def report_problem(report: Any) -> Optional[str]:
    """What breaks the contract in one report, or None."""
    if not isinstance(report, dict):
        return "a report must be an object"
    for name, kind in {**COMMON, **KINDS.get(report.get("kind"), {})}.items():
        if name not in report:
            return f"{name} missing"
        value = report[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"{name} has the wrong type"
    if not isinstance(report.get("servicer_userid"), (str, type(None))):
        return "servicer_userid has the wrong type"
    if report["kind"] not in KINDS:
        return "unknown kind"
    if not 1 <= len(report["report_id"]) <= 128 or len(report["sender_id"]) > 255:
        return "report_id or sender_id too long"
    if report["channel"] not in ("wecom_kf", "wechat", "wecom"):
        return "unknown channel"
    if isinstance(report.get("at"), bool) or not isinstance(report.get("at"), (int, float)):
        return "at must be unix seconds"
    if len(report.get("text", "")) > 4096:
        return "text over 4096 characters"
    if report["kind"] == "delivery":
        if report["state"] not in ("sent", "held"):
            return "state must be sent or held"
        if report["state"] == "held" and not (isinstance(report.get("reason"), str) and report["reason"]):
            return "a held report needs a reason"
    if report["kind"] == "session" and not 0 <= report["state"] <= 4:
        return "session state out of range"
    return None


class RecordingDesk:
    """Takes reports, keeps the valid ones in ``reports`` (each report_id once)."""

    def __init__(self, token: str = "kf-desk-token") -> None:
        self.token = token
        self.reports: List[Dict[str, Any]] = []
        self.refusals: List[str] = []
        self.down = False
        self.app = web.Application(client_max_size=4 * 1024 * 1024)
        self.app.router.add_post("/api/channel/reports", self._take)
        self.url = ""

    async def _take(self, request: web.Request) -> web.Response:
        if self.down:
            return web.json_response({"error": "restarting"}, status=503)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._refuse("not JSON")
        reports = body.get("reports") if isinstance(body, dict) else None
        if not isinstance(reports, list) or not 1 <= len(reports) <= 200:
            return self._refuse("reports must be a list of 1..200")
        rejected, valid = [], []
        for index, report in enumerate(reports):
            problem = report_problem(report)
            if problem:
                self.refusals.append(problem)
                rejected.append({"index": index, "error": problem})
            else:
                valid.append(report)
        seen = {report["report_id"] for report in self.reports}
        taken = [report for report in valid if report["report_id"] not in seen]
        self.reports.extend(taken)
        return web.json_response({"accepted": len(valid), "rejected": rejected, "taken": len(taken), "ignored": len(valid) - len(taken)})

    def _refuse(self, problem: str) -> web.Response:
        self.refusals.append(problem)
        return web.json_response({"error": problem}, status=400)

    def of(self, kind: str, sender_id: Optional[str] = None) -> List[Dict[str, Any]]:
        """The reports of one kind (for one sender), in order."""
        return [r for r in self.reports if r["kind"] == kind and (sender_id is None or r["sender_id"] == sender_id)]

    def start_in_thread(self) -> "RecordingDesk":
        """Serve on a free loopback port from a thread of its own."""
        self.url = serve_in_thread(self.app)
        return self

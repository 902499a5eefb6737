"""The WeChat Official Account's token and customer-service send API on 127.0.0.1, holding
to the platform's send rules: 48 hours since the follower's last message (45015), 5
messages since then (45047), a global token that a second fetch replaces (40001)."""

from __future__ import annotations

import time
from typing import Dict, List

from aiohttp import web

from tests.local_http import serve_in_thread

HOUR = 3600


class OfficialAccount:
    """``cgi-bin/token`` and ``message/custom/send`` with the platform's rules."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.token = ""
        self.token_requests = 0
        self.last_in: Dict[str, float] = {}
        self.sent_since: Dict[str, int] = {}
        self.delivered: List[Dict] = []
        self.unauthorized = False
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._send)
        self.url = serve_in_thread(app)

    def now(self) -> float:
        return time.time() + self.offset

    def follower_writes(self, openid: str) -> None:
        """The follower wrote: the window opens, the quota is full."""
        self.last_in[openid], self.sent_since[openid] = self.now(), 0

    async def _token(self, request: web.Request) -> web.Response:
        if request.query.get("grant_type") != "client_credential" or request.query.get("secret") != "secret":
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        self.token_requests += 1
        self.token = f"T{self.token_requests}"  # the account's token is global: the old one stops working
        return web.json_response({"access_token": self.token, "expires_in": 7200})

    async def _send(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") != self.token:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        body = await request.json()
        user = body.get("touser")
        if self.unauthorized:
            return web.json_response({"errcode": 48001, "errmsg": "api unauthorized"})
        if user not in self.last_in or self.now() - self.last_in[user] > 48 * HOUR:
            return web.json_response({"errcode": 45015, "errmsg": "response out of time limit"})
        if self.sent_since[user] >= 5:
            return web.json_response({"errcode": 45047, "errmsg": "out of response count limit"})
        self.sent_since[user] += 1
        self.delivered.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def texts_to(self, user: str) -> List[str]:
        return [m["text"]["content"] for m in self.delivered if m["touser"] == user]

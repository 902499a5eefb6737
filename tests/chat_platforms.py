"""Fake chat platforms on 127.0.0.1 that hold to the real platforms' rules, and a strict desk.

* ``OfficialAccount``: the WeChat Official Account API — ``cgi-bin/token`` (AppID and
  AppSecret checked, errcode 40013 / 40125), ``cgi-bin/message/custom/send`` and
  ``cgi-bin/media/get`` (a token it did not issue, or one expired with ``expire_tokens``,
  is errcode 40001 / 42001; an unknown ``media_id`` is errcode 40007, as JSON, as the
  platform answers errors; a known one is the bytes with their content type).
* ``TelegramBotApi``: ``/bot<token>/<method>`` for getMe, setWebhook (HTTPS only) and
  sendMessage (chat_id and 1..4096 characters of text); another token is 401 Unauthorized.
* ``SlackWebApi``: ``/api/chat.postMessage`` with the bearer bot token (else
  ``invalid_auth``), a channel (``channel_not_found``) and text or blocks (``no_text``).
* ``AttachmentDesk``: ``POST /api/channel/attachments`` of the channel->desk contract,
  strict: 401 without the bearer, 400 without sender_id/channel/msgid, 415 for another
  content type, 413 over 2 MiB; records what it took and answers 201 (200 with the same
  ``attachment_id`` for a msgid it took before) or, for senders without an open case,
  200 ``{"ignored": true}``.

``serve_in_thread`` runs such an app in a thread of its own, for tests that talk to real
Rasa processes with blocking HTTP.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import random
import threading
import time
from typing import Any, Dict, List, Optional, Set

from aiohttp import web

ATTACHMENT_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MAX_ATTACHMENT_BYTES = 2 * 1024 * 1024


def picture(kind: str = "PNG", size: int = 8, noise: bool = False) -> bytes:
    """A real picture (Pillow), ``size`` x ``size`` pixels of one colour, or of random
    noise (which does not compress: 1000 x 1000 is about 3 MB as PNG)."""
    from PIL import Image

    out = io.BytesIO()
    if noise:
        image = Image.frombytes("RGB", (size, size), random.Random(size).randbytes(size * size * 3))
    else:
        image = Image.new("RGB", (size, size), (200, 30, 30))
    image.save(out, format=kind)
    return out.getvalue()


def media_reply(media: Dict[str, tuple], media_id: str) -> web.Response:
    """``cgi-bin/media/get``'s answer once the token is good (the same on the Official
    Account and WeCom): the bytes of a known ``media_id`` with their content type, else
    errcode 40007 as JSON, as the platform answers errors."""
    found = media.get(media_id)
    if found is None:
        return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
    data, content_type = found
    return web.Response(body=data, content_type=content_type, headers={"Content-disposition": 'attachment; filename="media.bin"'})


class OfficialAccount:
    """The Official Account's token, customer-service message and media endpoints."""

    def __init__(self, app_id: str, secret: str) -> None:
        self.app_id, self.secret = app_id, secret
        self.valid_tokens: Set[str] = set()
        self.expired_tokens: Set[str] = set()
        self.sent: List[Dict[str, Any]] = []
        self.media: Dict[str, tuple] = {}  # media_id -> (bytes, content type)
        self.media_requests: List[Dict[str, str]] = []
        self._numbers = itertools.count(1)

    def install(self, app: web.Application) -> None:
        """Add the endpoints to ``app``."""
        app.router.add_get("/cgi-bin/token", self.token)
        app.router.add_post("/cgi-bin/message/custom/send", self.send)
        app.router.add_get("/cgi-bin/media/get", self.media_get)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (errcode 42001)."""
        self.expired_tokens |= self.valid_tokens
        self.valid_tokens = set()

    def _token_problem(self, token: str) -> Optional[web.Response]:
        if token in self.expired_tokens:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        if token not in self.valid_tokens:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        return None

    async def token(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("grant_type") != "client_credential":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        if query.get("appid") != self.app_id:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if query.get("secret") != self.secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        token = f"oa-token-{next(self._numbers)}"
        self.valid_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def send(self, request: web.Request) -> web.Response:
        problem = self._token_problem(request.query.get("access_token", ""))
        if problem is not None:
            return problem
        body = await request.json()
        if not body.get("touser") or body.get("msgtype") != "text" or not (body.get("text") or {}).get("content"):
            return web.json_response({"errcode": 44003, "errmsg": "empty news data"})
        self.sent.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def media_get(self, request: web.Request) -> web.Response:
        self.media_requests.append(dict(request.query))
        problem = self._token_problem(request.query.get("access_token", ""))
        if problem is not None:
            return problem
        return media_reply(self.media, request.query.get("media_id", ""))

    def texts(self, user: str) -> List[str]:
        """The texts sent to ``user``, in order."""
        return [m["text"]["content"] for m in self.sent if m["touser"] == user]


class TelegramBotApi:
    """The Bot API methods Rasa's Telegram channel calls."""

    def __init__(self, token: str, username: str) -> None:
        self.token, self.username = token, username
        self.webhooks: List[str] = []
        self.sent: List[Dict[str, str]] = []
        self._numbers = itertools.count(1)

    def install(self, app: web.Application) -> None:
        """Add the endpoints to ``app``."""
        app.router.add_route("*", "/bot{token}/{method}", self.call)

    async def call(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        fields: Dict[str, str] = dict(await request.post()) if request.can_read_body else {}
        method = request.match_info["method"].lower()
        if method == "getme":
            return self._ok({"id": 777, "is_bot": True, "first_name": "POS", "username": self.username})
        if method == "setwebhook":
            if not str(fields.get("url", "")).startswith("https://"):
                return self._bad("Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
            self.webhooks.append(str(fields["url"]))
            return self._ok(True)
        if method == "sendmessage":
            text = str(fields.get("text", ""))
            if not fields.get("chat_id"):
                return self._bad("Bad Request: chat not found")
            if not text.strip():
                return self._bad("Bad Request: message text is empty")
            if len(text) > 4096:
                return self._bad("Bad Request: message is too long")
            self.sent.append({k: str(v) for k, v in fields.items()})
            chat = {"id": int(fields["chat_id"]), "type": "private"}
            return self._ok({"message_id": next(self._numbers), "date": int(time.time()), "chat": chat, "text": text})
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _bad(description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": 400, "description": description}, status=400)

    def texts(self, chat_id: str) -> List[str]:
        """The texts sent to a chat, in order."""
        return [m["text"] for m in self.sent if m["chat_id"] == chat_id]


class SlackWebApi:
    """``chat.postMessage`` of Slack's Web API."""

    def __init__(self, bot_token: str) -> None:
        self.bot_token = bot_token
        self.sent: List[Dict[str, Any]] = []

    def install(self, app: web.Application) -> None:
        """Add the endpoint to ``app``."""
        app.router.add_post("/api/chat.postMessage", self.post_message)

    async def post_message(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = dict(await request.post())
        if not body.get("channel"):
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if not body.get("text") and not body.get("blocks"):
            return web.json_response({"ok": False, "error": "no_text"})
        self.sent.append(body)
        return web.json_response({"ok": True, "channel": body["channel"], "ts": f"{time.time():.6f}"})

    def texts(self, channel: str) -> List[str]:
        """The texts posted to a channel, in order."""
        return [m.get("text") or "" for m in self.sent if m["channel"] == channel]


class AttachmentDesk:
    """The desk's ``POST /api/channel/attachments`` as the contract defines it (section 3)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.open_cases: Set[str] = set()
        self.taken: List[Dict[str, Any]] = []
        self.refused: List[int] = []

    def install(self, app: web.Application) -> None:
        """Add the endpoint to ``app``."""
        app.router.add_post("/api/channel/attachments", self.attach)

    def _refuse(self, status: int, error: str) -> web.Response:
        self.refused.append(status)
        return web.json_response({"error": error}, status=status)

    async def attach(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._refuse(401, "unauthorized")
        query = request.query
        if not all(query.get(name) for name in ("sender_id", "channel", "msgid")):
            return self._refuse(400, "sender_id, channel and msgid are required")
        if request.content_type not in ATTACHMENT_TYPES:
            return self._refuse(415, "unsupported content type")
        data = await request.content.read(MAX_ATTACHMENT_BYTES + 1)
        if len(data) > MAX_ATTACHMENT_BYTES:
            return self._refuse(413, "larger than 2 MiB")
        if query["sender_id"] not in self.open_cases:
            return web.json_response({"ignored": True})
        known = [t["msgid"] for t in self.taken]
        if query["msgid"] in known:  # the same msgid stores one
            return web.json_response({"attachment_id": 1 + known.index(query["msgid"])})
        self.taken.append({**dict(query), "content_type": request.content_type, "data": data})
        return web.json_response({"attachment_id": len(self.taken)}, status=201)


def serve_in_thread(app: web.Application) -> str:
    """Run ``app`` on 127.0.0.1 in a daemon thread with its own loop; its base URL."""
    ready = threading.Event()
    found: Dict[str, str] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        found["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    assert ready.wait(10), "fake platform did not start"
    return found["url"]

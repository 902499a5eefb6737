"""A fake 微信客服 (WeCom KF) API on 127.0.0.1 that enforces the platform's documented rules.

* ``gettoken``: the right corpid/corpsecret only (40013 / 40001); tokens expire
  (``expire_tokens``: 42001 for an expired token, 40014 for one never issued);
* ``kf/sync_msg``: needs a callback ``Token`` issued with a callback and not older than
  10 minutes (95007 otherwise), a known ``open_kfid`` (95000), a cursor it gave out
  (95008 otherwise); pages of at most ``page_size`` with ``has_more`` / ``next_cursor``;
  records how many syncs of one ``open_kfid`` ran at once;
* ``kf/send_msg``: ``text`` (at most 2,048 bytes, 44004 above) or ``msgmenu`` (head at most
  1,024 bytes, 1–10 items, an item's id 1–64 and words 1–128 bytes; 44004), other types
  40008; session state 0 or 1 only (95018 in 2/3/4); at most 5 messages within 48 h of the
  merchant's last message (95001 otherwise); a msgid seen before is not delivered twice;
* ``fail_next_send`` / ``busy_syncs``: the next sends / syncs answer that errcode first
  (-1 is the platform's "system busy", to be tried again);
* ``media/get``: a valid access token (as above), then the bytes of a ``media_id`` a
  merchant's picture carried (``customer_says(..., media=...)``), errcode 40007 for another;
* ``kf/service_state/get`` / ``trans``: the allowed moves 0→1/2/3/4, 1→1/2/3/4, 2→2/3/4,
  3→3/4 (95016 otherwise); to 3 only with a ``servicer_userid`` on duty (95014).

The clock is the fake's own (``advance``), so a test can let 48 hours pass.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from aiohttp import web

from tests.chat_platforms import media_reply
from tests.local_http import serve_in_thread

ALLOWED_MOVES = {0: {1, 2, 3, 4}, 1: {1, 2, 3, 4}, 2: {2, 3, 4}, 3: {3, 4}, 4: set()}
WINDOW, QUOTA = 48 * 3600, 5


class FakeKf:
    """The platform's state and its HTTP API (``app``); start it with ``start_in_thread``."""

    def __init__(self, corp_id: str, secret: str, open_kfid: str = "wkFAKE01", page_size: int = 1000, sync_delay: float = 0.0) -> None:
        self.corp_id, self.secret, self.open_kfids = corp_id, secret, {open_kfid}
        self.page_size, self.sync_delay = page_size, sync_delay
        self.offset = 0.0
        self.tokens: Dict[str, float] = {}  # access token -> expires at
        self.callback_tokens: Dict[str, float] = {}  # callback Token -> issued at
        self.log: Dict[str, List[Dict[str, Any]]] = {open_kfid: []}
        self.sessions: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.on_duty: Set[str] = set()
        self.delivered: List[Dict[str, Any]] = []
        self.refused: List[Tuple[int, Dict[str, Any]]] = []
        self.msgids: Set[str] = set()
        self.media: Dict[str, tuple] = {}  # media_id -> (bytes, content type), for media/get
        self.media_requests = 0
        self.token_requests = 0
        self.syncs_running: Dict[str, int] = {}
        self.most_syncs_at_once = 0
        self.sync_calls = 0
        self.fail_next_send: List[int] = []
        self.busy_syncs = 0  # this many sync_msg calls answer -1 (system busy) first
        self._sequence = 0
        self.lock = threading.Lock()  # the test thread and the server thread both touch the state
        self.app = web.Application()
        self.app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        self.app.router.add_post("/cgi-bin/kf/sync_msg", self._sync_msg)
        self.app.router.add_post("/cgi-bin/kf/send_msg", self._send_msg)
        self.app.router.add_get("/cgi-bin/media/get", self._media_get)
        self.app.router.add_post("/cgi-bin/kf/service_state/get", self._state_get)
        self.app.router.add_post("/cgi-bin/kf/service_state/trans", self._state_trans)
        self.url = ""

    # --- the test's side -----------------------------------------------------------

    def now(self) -> float:
        """The platform's clock."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Let time pass on the platform."""
        self.offset += seconds

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now."""
        with self.lock:
            self.tokens = {token: 0.0 for token in self.tokens}

    def issue_callback_token(self) -> str:
        """The ``Token`` of a new callback (valid 10 minutes)."""
        token = "ENC" + secrets.token_hex(12)
        with self.lock:
            self.callback_tokens[token] = self.now()
        return token

    def session(self, user: str, open_kfid: Optional[str] = None) -> Dict[str, Any]:
        """The merchant's session (state, servicer, last message, messages sent since)."""
        key = (open_kfid or next(iter(self.open_kfids)), user)
        return self.sessions.setdefault(key, {"state": 0, "servicer": None, "last_in": None, "sent": 0})

    def _append(self, open_kfid: Optional[str], entry: Dict[str, Any], send_time: Optional[float]) -> str:
        open_kfid = open_kfid or next(iter(self.open_kfids))
        self._sequence += 1
        msgid = f"MSG{self._sequence:06d}"
        self.log[open_kfid].append(
            {"msgid": msgid, "open_kfid": open_kfid, "send_time": int(send_time if send_time is not None else self.now()), **entry}
        )
        return msgid

    def customer_says(
        self,
        user: str,
        content: str,
        menu_id: Optional[str] = None,
        open_kfid: Optional[str] = None,
        send_time: Optional[float] = None,
        msgtype: str = "text",
        media: Optional[Tuple[bytes, str]] = None,
    ) -> str:
        """The merchant writes (origin 3): the window opens and the quota is full again.
        Another ``msgtype`` carries a new media_id; ``media`` (bytes, content type) is what
        ``media/get`` then gives for it."""
        with self.lock:
            session = self.session(user, open_kfid)
            if session["state"] == 4:
                session.update(state=0, servicer=None)
            session.update(last_in=self.now() if send_time is None else send_time, sent=0)
            body: Dict[str, Any] = {"msgtype": msgtype}
            if msgtype == "text":
                body["text"] = {"content": content, **({"menu_id": menu_id} if menu_id else {})}
            else:
                media_id = "MEDIA" + secrets.token_hex(4)
                body[msgtype] = {"media_id": media_id}
                if media is not None:
                    self.media[media_id] = media
            return self._append(open_kfid, {"external_userid": user, "origin": 3, **body}, send_time)

    def agent_says(self, user: str, servicer: str, content: str, open_kfid: Optional[str] = None) -> str:
        """A WeCom 接待人员 answers in the WeCom client (origin 5)."""
        with self.lock:
            return self._append(
                open_kfid,
                {"external_userid": user, "origin": 5, "servicer_userid": servicer, "msgtype": "text", "text": {"content": content}},
                None,
            )

    def event(self, user: str, event_type: str, open_kfid: Optional[str] = None, **fields: Any) -> str:
        """A system event (origin 4); a session change also moves the session."""
        with self.lock:
            kfid = open_kfid or next(iter(self.open_kfids))
            if event_type == "session_status_change":
                session = self.session(user, kfid)
                change = fields["change_type"]
                session["state"] = {1: 3, 2: 3, 3: 4, 4: 3}[change]
                session["servicer"] = fields.get("new_servicer_userid")
            event = {"event_type": event_type, "open_kfid": kfid, "external_userid": user, **fields}
            return self._append(kfid, {"external_userid": user, "origin": 4, "msgtype": "event", "event": event}, None)

    def texts_to(self, user: str) -> List[str]:
        """What reached the merchant, in order (a menu as its head and its items)."""
        out = []
        for message in self.delivered:
            if message["touser"] != user:
                continue
            if message["msgtype"] == "text":
                out.append(message["text"]["content"])
            else:
                menu = message["msgmenu"]
                out.append("\n".join([menu.get("head_content", "")] + [i["click"]["content"] for i in menu["list"]]))
        return out

    def menus_to(self, user: str) -> List[Dict[str, Any]]:
        """The menus that reached the merchant."""
        return [m["msgmenu"] for m in self.delivered if m["touser"] == user and m["msgtype"] == "msgmenu"]

    # --- the platform's side -------------------------------------------------------

    def _token_problem(self, request: web.Request) -> Optional[web.Response]:
        token = request.query.get("access_token", "")
        expires = self.tokens.get(token)
        if expires is None:
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        if expires <= self.now():
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        return None

    async def _json(self, request: web.Request) -> Optional[Dict[str, Any]]:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _gettoken(self, request: web.Request) -> web.Response:
        if request.query.get("corpid") != self.corp_id:
            return web.json_response({"errcode": 40013, "errmsg": "invalid corpid"})
        if request.query.get("corpsecret") != self.secret:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        token = "AT" + secrets.token_hex(8)
        with self.lock:
            self.token_requests += 1
            self.tokens[token] = self.now() + 7200
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

    async def _sync_msg(self, request: web.Request) -> web.Response:
        problem = self._token_problem(request)
        if problem is not None:
            return problem
        body = await self._json(request)
        if body is None:
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        issued = self.callback_tokens.get(str(body.get("token")))
        if issued is None or self.now() - issued > 600:
            return web.json_response({"errcode": 95007, "errmsg": "invalid msg token"})
        kfid = body.get("open_kfid")
        if kfid not in self.open_kfids:
            return web.json_response({"errcode": 95000, "errmsg": "invalid open_kfid"})
        cursor = body.get("cursor") or "c0"
        if not isinstance(cursor, str) or not cursor.startswith("c") or not cursor[1:].isdigit():
            return web.json_response({"errcode": 95008, "errmsg": "invalid cursor"})
        limit = body.get("limit", 1000)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            return web.json_response({"errcode": 44004, "errmsg": "invalid limit"})
        with self.lock:
            self.sync_calls += 1
            if self.busy_syncs:
                self.busy_syncs -= 1
                return web.json_response({"errcode": -1, "errmsg": "system busy"})
            self.syncs_running[kfid] = self.syncs_running.get(kfid, 0) + 1
            self.most_syncs_at_once = max(self.most_syncs_at_once, self.syncs_running[kfid])
        try:
            await asyncio.sleep(self.sync_delay)
            start = int(cursor[1:])
            with self.lock:
                log = self.log[kfid]
                if start > len(log):
                    return web.json_response({"errcode": 95008, "errmsg": "invalid cursor"})
                page = log[start : start + min(limit, self.page_size)]
                end = start + len(page)
                return web.json_response(
                    {"errcode": 0, "errmsg": "ok", "next_cursor": f"c{end}", "has_more": int(end < len(log)), "msg_list": page}
                )
        finally:
            with self.lock:
                self.syncs_running[kfid] -= 1

    def _refuse(self, errcode: int, errmsg: str, body: Dict[str, Any]) -> web.Response:
        self.refused.append((errcode, body))
        return web.json_response({"errcode": errcode, "errmsg": errmsg})

    @staticmethod
    def _menu_problem(menu: Any) -> Optional[str]:
        """What breaks the documented msgmenu limits: head/tail at most 1,024 bytes, 1 to 10
        items, a click's id 1–64 bytes and its words 1–128 bytes."""
        if not isinstance(menu, dict):
            return "no msgmenu"
        for part in ("head_content", "tail_content"):
            if len(str(menu.get(part, "")).encode()) > 1024:
                return f"{part} over 1024 bytes"
        items = menu.get("list")
        if not isinstance(items, list) or not 1 <= len(items) <= 10:
            return "a menu has 1 to 10 items"
        for item in items:
            click = item.get("click") if isinstance(item, dict) else None
            if not isinstance(click, dict) or not 1 <= len(str(click.get("id", "")).encode()) <= 64:
                return "a click id has 1 to 64 bytes"
            if not 1 <= len(str(click.get("content", "")).encode()) <= 128:
                return "a click's words have 1 to 128 bytes"
        return None

    async def _send_msg(self, request: web.Request) -> web.Response:
        problem = self._token_problem(request)
        if problem is not None:
            return problem
        body = await self._json(request)
        if body is None:
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        with self.lock:
            if body.get("open_kfid") not in self.open_kfids or not body.get("touser"):
                return self._refuse(95000, "invalid open_kfid or touser", body)
            msgid = body.get("msgid")
            if msgid in self.msgids:  # the same message again: accepted once, not delivered twice
                return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})
            kind = body.get("msgtype")
            if kind == "text":
                content = (body.get("text") or {}).get("content")
                if not isinstance(content, str) or not content:
                    return self._refuse(44004, "empty content", body)
                if len(content.encode()) > 2048:
                    return self._refuse(44004, "content over 2048 bytes", body)
            elif kind == "msgmenu":
                problem = self._menu_problem(body.get("msgmenu"))
                if problem:
                    return self._refuse(44004, problem, body)
            else:
                return self._refuse(40008, "invalid message type", body)
            session = self.session(body["touser"], body["open_kfid"])
            if session["state"] not in (0, 1):
                return self._refuse(95018, "send msg session status invalid", body)
            if session["last_in"] is None or self.now() - session["last_in"] > WINDOW or session["sent"] >= QUOTA:
                return self._refuse(95001, "send msg count limit", body)
            if self.fail_next_send:
                return self._refuse(self.fail_next_send.pop(0), "system error", body)
            session["sent"] += 1
            msgid = msgid or "AUTO" + secrets.token_hex(6)
            self.msgids.add(msgid)
            self.delivered.append(body)
            return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    async def _media_get(self, request: web.Request) -> web.Response:
        with self.lock:
            self.media_requests += 1
        problem = self._token_problem(request)
        if problem is not None:
            return problem
        return media_reply(self.media, request.query.get("media_id", ""))

    async def _state_get(self, request: web.Request) -> web.Response:
        problem = self._token_problem(request)
        if problem is not None:
            return problem
        body = await self._json(request) or {}
        with self.lock:
            session = self.session(str(body.get("external_userid")), body.get("open_kfid"))
            return web.json_response(
                {"errcode": 0, "errmsg": "ok", "service_state": session["state"], "servicer_userid": session["servicer"] or ""}
            )

    async def _state_trans(self, request: web.Request) -> web.Response:
        problem = self._token_problem(request)
        if problem is not None:
            return problem
        body = await self._json(request) or {}
        with self.lock:
            session = self.session(str(body.get("external_userid")), body.get("open_kfid"))
            target = body.get("service_state")
            if target not in ALLOWED_MOVES.get(session["state"], set()):
                return web.json_response({"errcode": 95016, "errmsg": "invalid service state change"})
            if target == 3 and body.get("servicer_userid") not in self.on_duty:
                return web.json_response({"errcode": 95014, "errmsg": "servicer not on duty"})
            session.update(state=target, servicer=body.get("servicer_userid") if target == 3 else None)
            return web.json_response({"errcode": 0, "errmsg": "ok", "msg_code": "CODE" + secrets.token_hex(4)})

    # --- running -------------------------------------------------------------------

    def start_in_thread(self) -> "FakeKf":
        """Serve on a free loopback port from a thread of its own (for real Rasa processes)."""
        self.url = serve_in_thread(self.app)
        return self

"""Bad input and credentials at the doors of a real Rasa server (the shared Stack).

Real processes on 127.0.0.1 (tests/harness/stack.py's Stack: desk, action server,
Rasa with the trained model, the WeCom / WeChat channels against a local platform API):

* REST channel and socket.io: empty, whitespace, 100 kB, invalid UTF-8, control
  characters, emoji, JSON of the wrong shape, SQL and markup text, card numbers —
  each gets a 400 with a JSON error or a polite answer, the text is stored cleaned and
  masked, and Rasa keeps answering;
* WeCom / WeChat callbacks: malformed XML, forged signatures, replays, non-UTF-8,
  oversized bodies, missing query parameters — 4xx, never an answer to the merchant;
* credentials: every Rasa HTTP API route that needs the token refuses without it or
  with a wrong one (401); the action server listens on loopback only; no process log
  holds a secret.
"""

from __future__ import annotations

import ast
import asyncio
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import socketio

from channels.masked import EMPTY_ANSWER, MAX_MESSAGE_CHARS, TOO_LONG_ANSWER
from channels.widget_text import widget_parts
from tests.harness.http import raw
from tests.harness.stack import RASA_TOKEN, Stack
from tests.wecom_protocol import DOC_AES_KEY, DOC_CORP_ID, DOC_TOKEN, callback, encrypt_bytes, sign, text_message

CARD = "6222 0202 0000 0000 006"  # Luhn-valid 19 digits, written in groups
CARD_DIGITS = CARD.replace(" ", "")
CARD_MASKED = "622202******0006"


def user_texts(stack: Stack, sender: str) -> List[str]:
    return [e.get("text") for e in stack.tracker(sender)["events"] if e["event"] == "user"]


def rest(stack: Stack, body: Any) -> Tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = raw("POST", f"{stack.rasa_url}/webhooks/rest/webhook", data)
    return status, json.loads(answer)


def bot_texts(answer: Any) -> List[str]:
    return [message.get("text") for message in answer]


# --- REST channel ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, error",
    [
        (b"", "the body must be a JSON object"),
        (b"   ", "the body must be a JSON object"),
        (b"sender=a&message=b", "the body must be a JSON object"),
        (b'{"sender": "s", "message": "\xff\xfe"}', "the body must be a JSON object"),  # not UTF-8
        (b"[" * 100_000, "the body must be a JSON object"),  # 100 kB of nesting
        (b'[{"sender": "s", "message": "hi"}]', "the body must be a JSON object with sender and message"),
        (b'"hi"', "the body must be a JSON object with sender and message"),
        (b'{"message": "hi"}', "sender is required and must be a string"),
        (b'{"sender": "", "message": "hi"}', "sender is required and must be a string"),
        (b'{"sender": {"id": 1}, "message": "hi"}', "sender is required and must be a string"),
        (b'{"sender": "s"}', "message is required and must be a string"),
        (b'{"sender": "s", "message": 1000}', "message is required and must be a string"),
        (b'{"sender": "s", "message": ["hi"]}', "message is required and must be a string"),
        (b'{"sender": "s", "message": "hi", "metadata": [1]}', "metadata must be a JSON object"),
        (json.dumps({"sender": "s" * 256, "message": "hi"}).encode(), "sender is longer than 255 characters"),
    ],
)
def test_rest_bodies_it_cannot_handle_get_a_400_json_error(stack, body, error):
    assert rest(stack, body) == (400, {"error": error})


@pytest.mark.parametrize(
    "text, answer",
    [
        ("", EMPTY_ANSWER),
        ("   \n\t ", EMPTY_ANSWER),
        ("\x00\x1b\x07\x7f", EMPTY_ANSWER),
        ("报" * 100_000, TOO_LONG_ANSWER["zh"]),  # 100 kB and more
        ("error " * 17_000, TOO_LONG_ANSWER["en"]),
        ("x" * (MAX_MESSAGE_CHARS + 1), TOO_LONG_ANSWER["en"]),
    ],
)
def test_rest_empty_and_oversized_messages_get_a_polite_answer_and_are_not_stored(stack, text, answer):
    sender = f"door-{uuid.uuid4().hex[:8]}"
    status, reply = rest(stack, {"sender": sender, "message": text})
    assert status == 200 and reply == [{"recipient_id": sender, "text": answer}]
    assert user_texts(stack, sender) == []


def test_rest_a_message_at_the_limit_is_answered_by_the_bot(stack):
    sender = f"door-{uuid.uuid4().hex[:8]}"
    status, reply = rest(stack, {"sender": sender, "message": "pos机报1000" + "啊" * (MAX_MESSAGE_CHARS - 9)})
    assert status == 200 and reply and TOO_LONG_ANSWER["zh"] not in bot_texts(reply)
    assert len(user_texts(stack, sender)[0]) == MAX_MESSAGE_CHARS


@pytest.mark.parametrize(
    "text, stored",
    [
        ("pos机\x00报\x1b1000\x07咋整", "pos机报1000咋整"),  # control characters dropped
        ("pos机报1000 \ud800咋整", "pos机报1000 咋整"),  # an unpaired surrogate ("\\ud800" in JSON)
        ("😀😀 pos机报1000咋整 🙏", "😀😀 pos机报1000咋整 🙏"),  # emoji kept
        ("'; DROP TABLE events; -- 1000", "'; DROP TABLE events; -- 1000"),  # stored verbatim
        ("<script>alert(1)</script> 报1000", "<script>alert(1)</script> 报1000"),  # text, not markup
        (f"卡号 {CARD} 刷卡报1000", f"卡号 {CARD_MASKED} 刷卡报1000"),  # masked before it is stored
    ],
)
def test_rest_odd_text_is_answered_and_stored_cleaned_and_masked(stack, text, stored):
    sender = f"door-{uuid.uuid4().hex[:8]}"
    status, reply = rest(stack, {"sender": sender, "message": text})
    assert status == 200 and reply and all(isinstance(t, str) and t for t in bot_texts(reply))
    assert user_texts(stack, sender) == [stored]
    assert CARD_DIGITS not in json.dumps(stack.tracker(sender), ensure_ascii=False).replace(" ", "")


def test_rest_sender_with_odd_characters_keeps_its_own_conversation(stack):
    sender = "shop'; DROP TABLE events;-- 😀"
    status, reply = rest(stack, {"sender": sender, "message": "pos机报1000咋整"})
    assert status == 200 and reply and {m["recipient_id"] for m in reply} == {sender}


# --- socket.io (the website widget) ------------------------------------------------------


class Widget:
    """A socket.io client as rasa-webchat speaks it (session_request, user_uttered)."""

    def __init__(self, url: str) -> None:
        self.url, self.session = url, f"widget-{uuid.uuid4().hex[:10]}"
        self.client = socketio.AsyncClient()
        self.bot: asyncio.Queue = asyncio.Queue()
        self.client.on("bot_uttered", self.bot.put_nowait)

    async def __aenter__(self) -> "Widget":
        confirmed = asyncio.get_running_loop().create_future()
        self.client.on("session_confirm", lambda sid: confirmed.done() or confirmed.set_result(sid))
        await self.client.connect(self.url, socketio_path="/socket.io", transports=["polling"])
        await self.client.emit("session_request", {"session_id": self.session})
        assert await asyncio.wait_for(confirmed, 30) == self.session
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.client.disconnect()

    async def say(self, data: Any) -> None:
        await self.client.emit("user_uttered", data)

    async def answer(self) -> Dict[str, Any]:
        return await asyncio.wait_for(self.bot.get(), 60)


@pytest.mark.parametrize(
    "text, answer",
    [("", EMPTY_ANSWER), (" \x00 ", EMPTY_ANSWER), ("报" * 100_000, TOO_LONG_ANSWER["zh"]), ("x" * 100_000, TOO_LONG_ANSWER["en"])],
)
async def test_socketio_empty_and_oversized_messages_get_a_polite_answer(stack, text, answer):
    async with Widget(stack.rasa_url) as widget:
        await widget.say({"message": text, "session_id": widget.session})
        # The widget gets the answer as markdown that shows exactly these words.
        assert [(await widget.answer())["text"]] == widget_parts(answer)
        assert user_texts(stack, widget.session) == []


async def test_socketio_events_of_the_wrong_shape_are_dropped_and_the_widget_keeps_working(stack):
    async with Widget(stack.rasa_url) as widget:
        for data in (
            ["hi"],
            "hi",
            1000,
            None,
            {"message": 1000, "session_id": widget.session},
            {"message": ["hi"], "session_id": widget.session},
            {"message": "hi", "session_id": {"id": 1}},
            {"message": "hi", "session_id": widget.session, "metadata": "not json"},
            {"message": "hi", "session_id": "x" * 1000},
        ):
            await widget.say(data)
        await widget.client.emit("session_request", "not an object")
        await widget.say({"message": f"卡号{CARD}\x00 pos机报1000😀", "session_id": widget.session})
        assert (await widget.answer())["text"]
        assert user_texts(stack, widget.session) == [f"卡号{CARD_MASKED} pos机报1000😀"]


# --- WeCom / WeChat callbacks --------------------------------------------------------------


def wecom(stack: Stack, query: Dict[str, str], body: bytes, name: str = "wecom", method: str = "POST"):
    url = f"{stack.rasa_url}/webhooks/{name}/webhook?{urllib.parse.urlencode(query)}"
    status, answer = raw(method, url, body if method == "POST" else None, {"Content-Type": "text/xml"})
    return status, answer.decode("utf-8", errors="replace")


def fresh_callback(user: str, text: str, msg_id: str, receive_id: str = DOC_CORP_ID):
    return callback(DOC_TOKEN, DOC_AES_KEY, receive_id, text_message(user, text, msg_id), str(int(time.time())))


def signed_body(encrypted: str, timestamp: Optional[str] = None):
    timestamp = timestamp or str(int(time.time()))
    body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    return {"msg_signature": sign(DOC_TOKEN, timestamp, "1", encrypted), "timestamp": timestamp, "nonce": "1"}, body


@pytest.mark.parametrize(
    "tamper, status, reason",
    [
        (lambda q, b: (q, b"<xml><Encrypt>"), 400, "body is not XML"),
        (lambda q, b: (q, b"\xff\xfe<\x00x\x00"), 400, "body is not XML"),
        (lambda q, b: (q, b"<xml><ToUserName>x</ToUserName></xml>"), 400, "Encrypt missing"),
        (lambda q, b: (q, b"<xml>" + b"A" * 70_000 + b"</xml>"), 413, "body too large"),
        (lambda q, b: ({**q, "msg_signature": "0" * 40}, b), 403, "bad signature"),
        (lambda q, b: ({**q, "msg_signature": "签名"}, b), 403, "bad signature"),
        (lambda q, b: ({**q, "nonce": "other"}, b), 403, "bad signature"),
        (lambda q, b: ({k: v for k, v in q.items() if k != "msg_signature"}, b), 403, "bad signature"),
        (lambda q, b: ({k: v for k, v in q.items() if k != "timestamp"}, b), 403, "stale or missing timestamp"),
        (lambda q, b: ({}, b), 403, "stale or missing timestamp"),
        (lambda q, b: ({**q, "timestamp": "²"}, b), 403, "stale or missing timestamp"),
        (lambda q, b: ({**q, "timestamp": "9" * 5000}, b), 403, "stale or missing timestamp"),
    ],
)
def test_wecom_callbacks_that_are_malformed_or_forged_get_a_4xx(stack, platform, tamper, status, reason):
    user = f"u-{uuid.uuid4().hex[:6]}"
    query, body = tamper(*fresh_callback(user, "pos机报1000咋整", uuid.uuid4().hex[:12]))
    assert wecom(stack, query, body) == (status, reason)
    assert platform.texts(user) == []


def test_wecom_replayed_callbacks_are_refused_or_answered_once(stack, platform):
    user = f"u-{uuid.uuid4().hex[:6]}"
    old = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, text_message(user, "pos机报1000咋整", "8001"), str(int(time.time()) - 3600))
    assert wecom(stack, *old) == (403, "stale or missing timestamp")
    query, body = fresh_callback(user, "pos机报1000咋整", f"r-{uuid.uuid4().hex[:8]}")
    assert [wecom(stack, query, body) for _ in range(3)] == [(200, "")] * 3  # the platform's retries
    for _ in range(120):
        if platform.texts(user):
            break
        time.sleep(0.5)
    time.sleep(2)  # a duplicate, if any, would be on its way by now
    assert len(user_texts(stack, user)) == 1


@pytest.mark.parametrize(
    "plain, status, reason",
    [
        (b"\xff\xfe not utf-8", 400, "message is not UTF-8"),
        (b"<xml><MsgType>text", 400, "body is not XML"),
        (b"<xml><MsgType>text</MsgType></xml>", 400, "FromUserName missing"),
    ],
)
def test_wecom_bad_plaintext_inside_a_valid_signature_is_a_400(stack, plain, status, reason):
    assert wecom(stack, *signed_body(encrypt_bytes(plain))) == (status, reason)


def test_wecom_message_for_another_receiver_is_refused(stack):
    query, body = fresh_callback("u", "hi", "9001", receive_id="wx-other-corp")
    assert wecom(stack, query, body) == (403, "message is for another receiver")


def test_wecom_oversized_text_gets_a_polite_answer(stack, platform):
    user = f"u-{uuid.uuid4().hex[:6]}"
    query, body = fresh_callback(user, "报" * 3000, uuid.uuid4().hex[:12])
    assert wecom(stack, query, body) == (200, "")
    for _ in range(60):
        if platform.texts(user):
            break
        time.sleep(0.5)
    assert platform.texts(user) == [TOO_LONG_ANSWER["zh"]]


@pytest.mark.parametrize("name", ["wecom", "wechat"])
@pytest.mark.parametrize(
    "query",
    [{}, {"echostr": "x"}, {"msg_signature": "签名", "signature": "签名", "timestamp": "1", "nonce": "1", "echostr": "x"}],
)
def test_url_verification_without_a_valid_signature_is_a_403(stack, name, query):
    assert wecom(stack, query, b"", name=name, method="GET") == (403, "bad signature")


# --- credentials -------------------------------------------------------------------------


def rasa_protected_routes() -> List[Tuple[str, str]]:
    """Every route of Rasa's HTTP API that is wrapped in ``requires_auth`` (read from rasa/server.py)."""
    import rasa.server

    tree = ast.parse(Path(rasa.server.__file__).read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AsyncFunctionDef):
            names = [ast.unparse(d) for d in node.decorator_list]
            route = next((d for d in node.decorator_list if isinstance(d, ast.Call) and ast.unparse(d.func).startswith("app.")), None)
            if route is not None and any(n.startswith("requires_auth") for n in names):
                path = route.args[0].value.replace("<conversation_id:path>", "door-x")
                found.append((route.func.attr.upper(), path))
    return found


PROTECTED = rasa_protected_routes()


def test_rasa_protects_the_routes_this_test_knows():
    assert len(PROTECTED) >= 17 and ("GET", "/conversations/door-x/tracker") in PROTECTED
    assert ("POST", "/model/parse") in PROTECTED and ("PUT", "/model") in PROTECTED


@pytest.mark.parametrize("method, path", PROTECTED)
@pytest.mark.parametrize("token", [None, "", "wrong-token", RASA_TOKEN + "x"])
def test_every_rasa_api_route_refuses_without_the_token(stack, method, path, token):
    query = "" if token is None else f"?token={urllib.parse.quote(token)}"
    status, body = raw(method, f"{stack.rasa_url}{path}{query}", b"{}")
    assert status == 401
    answer = json.loads(body)
    assert (answer["status"], answer["reason"], answer["code"]) == ("failure", "NotAuthenticated", 401)


def test_rasa_api_answers_with_the_token(stack):
    status, body = raw("POST", f"{stack.rasa_url}/model/parse?token={RASA_TOKEN}", json.dumps({"text": "pos机报1000"}).encode())
    assert status == 200 and json.loads(body)["intent"]["name"]
    status, body = raw("GET", f"{stack.rasa_url}/conversations/door-x/tracker?token={RASA_TOKEN}")
    assert status == 200 and json.loads(body)["sender_id"] == "door-x"


def listening_addresses(port: int) -> List[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp{,6})."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                if len(address) == 8:
                    found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.append(address)
    return found


def non_loopback_ipv4() -> List[str]:
    addresses = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing address
            addresses.add(probe.getsockname()[0])
        except OSError:
            pass
    try:
        addresses.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
    except OSError:
        pass
    return sorted(a for a in addresses if not a.startswith("127.") and a != "0.0.0.0")


def test_action_server_listens_on_loopback_only(stack):
    assert listening_addresses(stack.actions_port) == ["127.0.0.1"]
    assert raw("GET", f"http://127.0.0.1:{stack.actions_port}/health")[0] == 200
    for address in non_loopback_ipv4():
        with socket.socket() as client:
            client.settimeout(5)
            assert client.connect_ex((address, stack.actions_port)) != 0, f"reachable on {address}"


def test_no_process_log_holds_a_secret_or_a_full_card_number(stack):
    secrets = [RASA_TOKEN, stack.desk.token]
    for log in stack.logs:
        text = log.read_bytes().decode("utf-8", errors="replace")
        for secret in secrets:
            assert secret not in text, f"{secret!r} in {log.name}"
        assert CARD_DIGITS not in text.replace(" ", ""), log.name

"""End to end with real processes on 127.0.0.1: Rasa server, action server, support desk.

A merchant talks over Rasa's REST channel, runs the diagnostics and is handed over; an
agent replies through the desk API; the reply is in the merchant's Rasa tracker; the
agent resolves and the bot answers the merchant again. Then the desk is stopped, a
second merchant escalates, the desk comes back and the escalation arrives exactly once.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from aiohttp import web

from scripts.launch import command
from tests.test_conversations import MODEL, ROOT, DeskProcess, free_port, wait_for
from tests.wecom_protocol import DOC_AES_KEY, DOC_CORP_ID, DOC_TOKEN, callback, text_message

RASA_TOKEN = "e2e-rasa-token"


def http(method: str, url: str, body: Any = None, headers: Dict[str, str] = None) -> Any:
    request = urllib.request.Request(
        url, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


class Stack:
    """Desk, action server and Rasa, wired together as `make run` wires them."""

    def __init__(self, directory: Path, credentials: Path) -> None:
        assert MODEL.exists(), "no trained model: run `make train` (make test does it first)"
        self.directory = directory
        self.rasa_port, self.actions_port = free_port(), free_port()
        self.desk = self._start_desk(port=None)
        env = {
            **os.environ,
            "DESK_URL": self.desk.url,
            "DESK_API_TOKEN": self.desk.token,
            "INCIDENT_BOARD_URL": f"{self.desk.url}/api/incidents",
            "OUTBOX_FILE": str(directory / "outbox.sqlite"),
            "OUTBOX_RETRY_SECONDS": "1",
            "WIDGET_DELIVERY_FILE": str(directory / "widget_delivery.sqlite"),
            "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{self.actions_port}/webhook",
            "TRACKER_STORE_URL": f"sqlite:///{directory / 'tracker.db'}",
        }
        # Logs are kept: a test checks no card number reaches them.
        self.logs = [directory / "actions.log", directory / "rasa.log"]
        self.actions = subprocess.Popen(
            command("actions", port=str(self.actions_port)),
            cwd=ROOT, env=env, stdout=self.logs[0].open("wb"), stderr=subprocess.STDOUT,
        )
        # production's Rasa (the Procfile's line): only the port, files and token differ
        self.rasa = subprocess.Popen(
            command("rasa", model=str(MODEL), credentials=str(credentials), auth_token=RASA_TOKEN,
                    port=str(self.rasa_port)),
            cwd=ROOT, env=env, stdout=self.logs[1].open("wb"), stderr=subprocess.STDOUT,
        )
        wait_for(f"http://127.0.0.1:{self.actions_port}/health", self.actions, "action server")
        wait_for(f"{self.rasa_url}/", self.rasa, "Rasa")
        for _ in range(120):  # the model loads after the port opens
            if http("GET", f"{self.rasa_url}/status?token={RASA_TOKEN}").get("model_file"):
                break
            time.sleep(1)

    def _start_desk(self, port) -> DeskProcess:
        os.environ["RASA_URL"] = os.environ["RASA_PUBLIC_URL"] = f"http://127.0.0.1:{self.rasa_port}"
        os.environ["RASA_AUTH_TOKEN"] = RASA_TOKEN
        try:
            return DeskProcess(self.directory, port=port)
        finally:
            del os.environ["RASA_URL"], os.environ["RASA_PUBLIC_URL"], os.environ["RASA_AUTH_TOKEN"]

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    def say(self, sender: str, text: str) -> List[str]:
        answers = http("POST", f"{self.rasa_url}/webhooks/rest/webhook", {"sender": sender, "message": text})
        return [answer.get("text", "") for answer in answers or []]

    def tracker(self, sender: str) -> Dict[str, Any]:
        return http("GET", f"{self.rasa_url}/conversations/{sender}/tracker?token={RASA_TOKEN}")

    def stop(self) -> None:
        for process in (self.rasa, self.actions):
            process.terminate()
            process.wait(20)
        self.desk.stop()


class PlatformThread:
    """WeCom's token and send-message API on 127.0.0.1, in a thread of its own."""

    def __init__(self) -> None:
        self.sent: List[Dict[str, Any]] = []
        self.port = free_port()
        ready = threading.Event()

        async def token(_: web.Request) -> web.Response:
            return web.json_response({"errcode": 0, "access_token": "tok", "expires_in": 7200})

        async def send(request: web.Request) -> web.Response:
            self.sent.append(await request.json())
            return web.json_response({"errcode": 0, "errmsg": "ok"})

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_get("/cgi-bin/gettoken", token)  # WeCom
            app.router.add_post("/cgi-bin/message/send", send)
            app.router.add_get("/cgi-bin/token", token)  # WeChat Official Account
            app.router.add_post("/cgi-bin/message/custom/send", send)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)

    def texts(self, user: str) -> List[str]:
        return [m["text"]["content"] for m in self.sent if m["touser"] == user]


@pytest.fixture(scope="module")
def platform() -> PlatformThread:
    return PlatformThread()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, platform) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("e2e")
    # The repository's channels plus WeCom, its API pointed at the local platform.
    credentials = directory / "credentials.yml"
    credentials.write_text(
        (ROOT / "credentials.yml").read_text(encoding="utf-8")
        + f"""
channels.wecom.WeComInput:
  token: {DOC_TOKEN}
  encoding_aes_key: {DOC_AES_KEY}
  corp_id: {DOC_CORP_ID}
  agent_id: "1000002"
  secret: test-secret
  api_base: http://127.0.0.1:{platform.port}
channels.wecom.WeChatInput:
  token: {DOC_TOKEN}
  encoding_aes_key: {DOC_AES_KEY}
  app_id: wxtestappid
  secret: test-secret
  api_base: http://127.0.0.1:{platform.port}
""",
        encoding="utf-8",
    )
    running = Stack(directory, credentials)
    yield running
    running.stop()


def walk_to_handoff(stack: Stack, sender: str) -> str:
    """Run the diagnostics to the end without a fix and give the handoff details."""
    stack.say(sender, "pos机报1000咋整")
    stack.say(sender, "/start_diagnostics")
    for answer in ("/inform_not_fixed", '/inform{"terminal_model": "pax_a920"}',
                   "/inform_not_fixed", "/inform_not_fixed", "3.2.1"):
        stack.say(sender, answer)
    stack.say(sender, "商户号898310048160123")
    stack.say(sender, "13812345678")
    [escalated] = stack.say(sender, "从早上开始刷卡都报1000")
    return escalated


def test_merchant_and_agent_hold_the_whole_conversation(stack):
    merchant = "e2e-shop-1"
    escalated = walk_to_handoff(stack, merchant)
    assert escalated.startswith("您的工单号是 PX-")
    ticket = re.search(r"PX-[0-9A-Z]{6}", escalated).group(0)
    auth = {"Authorization": f"Bearer {stack.desk.token}"}

    [case] = http("GET", f"{stack.desk.url}/api/escalations?ticket={ticket}", headers=auth)["escalations"]
    assert case["sender_id"] == merchant and case["channel"] == "rest" and case["status"] == "open"
    assert stack.tracker(merchant)["paused"] is True

    # The merchant writes while paused: kept, shown to the agent, the bot stays quiet.
    assert stack.say(merchant, "还要等多久") == []
    detail = http("GET", f"{stack.desk.url}/api/escalations/{case['id']}", headers=auth)
    assert [m["text"] for m in detail["transcript"] if m["kind"] == "merchant"] == ["还要等多久"]

    http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/claim", {"agent": "li"}, auth)
    reply = http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/reply",
                 {"text": "您好，我是客服小李，正在查后台。", "agent": "li"}, auth)
    assert reply["delivered"] is True
    bot_texts = [e.get("text") for e in stack.tracker(merchant)["events"] if e["event"] == "bot"]
    assert bot_texts[-1] == "您好，我是客服小李，正在查后台。"

    resolved = http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/resolve",
                    {"note": "后台通道已恢复", "category": "server"}, auth)
    assert resolved["status"] == "resolved" and resolved["bot_resumed"] is True
    tracker = stack.tracker(merchant)
    assert tracker["paused"] is False
    # resume, the closing message, the rating question, action_listen
    assert [e["event"] for e in tracker["events"]][-4:] == ["resume", "bot", "bot", "action"]

    # The bot answers the merchant's next message again.
    answers = stack.say(merchant, "1000是什么意思")
    assert answers and answers[0].startswith("错误码1000一般表示")


def test_desk_down_escalation_arrives_once_when_it_is_back(stack):
    auth = {"Authorization": f"Bearer {stack.desk.token}"}
    port = stack.desk.port
    stack.desk.stop()
    escalated = walk_to_handoff(stack, "e2e-shop-2")
    assert "工单已保存" in escalated
    ticket = re.search(r"PX-[0-9A-Z]{6}", escalated).group(0)
    stack.desk = stack._start_desk(port=port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = http("GET", f"{stack.desk.url}/api/escalations?ticket={ticket}", headers=auth)["escalations"]
        if found:
            break
        time.sleep(0.5)
    time.sleep(3)  # a few more retry rounds: still exactly one
    found = http("GET", f"{stack.desk.url}/api/escalations?sender_id=e2e-shop-2", headers=auth)["escalations"]
    assert [c["ticket"] for c in found] == [ticket]


CARD = "6222021234567890128"  # Luhn-valid, 19 digits
CARD_MASKED = "622202******0128"


def test_card_numbers_are_masked_before_anything_stores_or_logs_them(stack):
    merchant = "e2e-shop-card"
    answers = stack.say(merchant, f"刷卡 {CARD} 报1000了 怎么办")
    assert answers
    user_texts = [e["text"] for e in stack.tracker(merchant)["events"] if e["event"] == "user"]
    assert user_texts == [f"刷卡 {CARD_MASKED} 报1000了 怎么办"]

    stack.say(merchant, "转人工")
    stack.say(merchant, f"终端号20481234 卡号{CARD}")
    stack.say(merchant, "13812345678")
    [escalated] = stack.say(merchant, f"顾客的卡{CARD}一直报1000")
    assert "PX-" in escalated

    # Every database file (with SQLite's -wal / -journal companions) and every log.
    stored = [*stack.directory.glob("*.db*"), *stack.directory.glob("*.sqlite*"), *stack.logs]
    assert {p.name for p in stored} >= {"tracker.db", "desk.db", "outbox.sqlite", "rasa.log", "actions.log"}
    # SQLite runs in WAL mode with kept connections: recent rows may still be in tracker.db-wal.
    tracker_on_disk = b"".join(p.read_bytes() for p in stack.directory.glob("tracker.db*"))
    assert CARD_MASKED.encode() in tracker_on_disk
    for path in stored:
        assert CARD.encode() not in path.read_bytes(), f"full card number in {path.name}"


def wait_until(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def post_callback(stack: Stack, query: Dict[str, str], body: bytes, channel: str = "wecom") -> int:
    url = f"{stack.rasa_url}/webhooks/{channel}/webhook?" + "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in query.items())
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/xml"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.read() == b""  # answered at once; the reply goes via the API
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_wecom_merchant_gets_answers_and_the_agents_reply(stack, platform):
    user = "zhangsan"
    plain = text_message(user, f"pos机报1000咋整 卡号{CARD}", "9001")
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, plain, str(int(time.time())))
    assert post_callback(stack, query, body) == 200
    wait_until(lambda: len(platform.texts(user)) >= 2)
    assert platform.texts(user)[0].startswith("出现1000，按这四步排查")
    assert "1. 好，带我排查" in platform.texts(user)[1]  # the offer's buttons, numbered

    # The platform retries the same MsgId (after 5 s, three times): answered once.
    for _ in range(3):
        assert post_callback(stack, query, body) == 200
    time.sleep(3)
    assert len(platform.texts(user)) == 2

    forged = {**query, "msg_signature": "0" * 40}
    assert post_callback(stack, forged, body) == 403
    stale_query, stale_body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, text_message(user, "hi", "9002"), "1409659589")
    assert post_callback(stack, stale_query, stale_body) == 403

    users = [e["text"] for e in stack.tracker(user)["events"] if e["event"] == "user"]
    assert users == [f"pos机报1000咋整 卡号{CARD_MASKED}"]

    # "1" answers the numbered choice: the guided checks start.
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, text_message(user, "1", "9003"), str(int(time.time())))
    assert post_callback(stack, query, body) == 200
    wait_until(lambda: len(platform.texts(user)) >= 3)
    assert platform.texts(user)[2].startswith("第1步（共4步）：检查网络。")

    # An agent's reply through the desk reaches the merchant in WeCom.
    auth = {"Authorization": f"Bearer {stack.desk.token}"}
    case = http("POST", f"{stack.desk.url}/api/escalations",
                {"sender_id": user, "channel": "wecom", "language": "zh", "summary": "via wecom"}, auth)
    reply = http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/reply", {"text": "您好，我是客服小李"}, auth)
    assert reply["delivered"] is True
    wait_until(lambda: "您好，我是客服小李" in platform.texts(user))
    # So does the closing message when the agent resolves the case.
    http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/resolve", {"note": "done"}, auth)
    # (followed by the 1-5 rating question, numbered choices on WeCom)
    wait_until(lambda: any(text.startswith("客服已处理完您的问题") for text in platform.texts(user)))


async def test_website_widget_merchant_is_handed_to_an_agent(stack):
    """Debian's chromium: the help page's widget, buttons, handoff, the agent's reply."""
    from playwright.async_api import async_playwright

    from tests.test_browser_console import CHROMIUM, CHROMIUM_ARGS, SHOTS

    SHOTS.mkdir(parents=True, exist_ok=True)
    auth = {"Authorization": f"Bearer {stack.desk.token}"}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1000, "height": 900})
        await page.goto(f"{stack.desk.url}/chat?lang=zh")
        await page.click(".rw-launcher")
        bot = page.locator(".rw-response")
        await bot.first.wait_for(timeout=30_000)  # the greeting

        async def say(text: str) -> None:
            count = await bot.count()
            await page.fill(".rw-new-message", text)
            await page.press(".rw-new-message", "Enter")
            await page.wait_for_function(
                "n => document.querySelectorAll('.rw-response').length > n", arg=count, timeout=30_000)

        async def click(title: str) -> None:
            count = await bot.count()
            await page.locator(".rw-reply", has_text=title).last.click()
            await page.wait_for_function(
                "n => document.querySelectorAll('.rw-response').length > n", arg=count, timeout=30_000)

        await say("pos机报1000怎么办")
        await click("好，带我排查")
        await click("还是报1000")
        await click("PAX A920")
        await click("还是报1000")
        await page.wait_for_timeout(500)
        await click("还是报1000")
        await page.wait_for_timeout(500)
        await say("3.2.1")
        await page.wait_for_timeout(1000)
        await say("商户号898310048160123")
        await say("13812345678")
        await say("从早上开始刷卡都报1000")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.rw-response')].some(e => e.innerText.includes('您的工单号是'))",
            timeout=30_000)
        await page.screenshot(path=str(SHOTS / "widget-escalated.png"))

        [case] = [c for c in http("GET", f"{stack.desk.url}/api/escalations?status=open", headers=auth)["escalations"]
                  if c["channel"] == "socketio"]
        http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/claim", {"agent": "小李"}, auth)
        http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/reply",
             {"text": "您好，我是客服小李，正在查后台。", "agent": "小李"}, auth)
        for expected in ("人工客服 小李 已加入对话。", "您好，我是客服小李，正在查后台。"):
            await page.wait_for_function(
                "t => [...document.querySelectorAll('.rw-response')].some(e => e.innerText.includes(t))",
                arg=expected, timeout=30_000)
        await page.screenshot(path=str(SHOTS / "widget-agent-reply.png"))

        # A reload keeps the conversation (session kept in local storage).
        await page.reload()
        await page.wait_for_selector(".rw-launcher, .rw-conversation-container")
        if not await page.locator(".rw-conversation-container").count():
            await page.click(".rw-launcher")  # the widget may come back closed
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.rw-response')].some(e => e.innerText.includes('客服小李'))",
            timeout=30_000)
        await browser.close()


def test_wechat_official_account_merchant_gets_an_answer(stack, platform):
    openid = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
    plain = text_message(openid, "what does error 1000 mean", "7001", to="gh_official")
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, "wxtestappid", plain, str(int(time.time())))
    assert post_callback(stack, query, body, channel="wechat") == 200
    wait_until(lambda: platform.texts(openid))
    assert platform.texts(openid)[0].startswith("Error 1000 usually means a system communication failure")
    # A message encrypted for another account is refused.
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, "wxsomeoneelse", plain.replace("7001", "7002"), str(int(time.time())))
    assert post_callback(stack, query, body, channel="wechat") == 403

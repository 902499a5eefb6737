"""End to end with real processes on 127.0.0.1: Rasa server, action server, support desk.

A merchant talks over Rasa's REST channel, runs the diagnostics and is handed over; an
agent replies through the desk API; the reply is in the merchant's Rasa tracker; the
agent resolves and the bot answers the merchant again. Then the desk is stopped, a
second merchant escalates, the desk comes back and the escalation arrives exactly once.
"""

from __future__ import annotations

import re
import sqlite3
import time

from tests.harness.http import http
from tests.harness.processes import wait_until
from tests.harness.stack import WECHAT_APP_ID, post_callback, walk_to_handoff
from tests.wecom_protocol import DOC_AES_KEY, DOC_CORP_ID, DOC_TOKEN, callback, text_message


def test_merchant_and_agent_hold_the_whole_conversation(stack):
    merchant = "e2e-shop-1"
    [escalated] = walk_to_handoff(stack.say, merchant)
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
    reply = http(
        "POST", f"{stack.desk.url}/api/escalations/{case['id']}/reply", {"text": "您好，我是客服小李，正在查后台。", "agent": "li"}, auth
    )
    assert reply["delivered"] is True
    bot_texts = [e.get("text") for e in stack.tracker(merchant)["events"] if e["event"] == "bot"]
    assert bot_texts[-1] == "您好，我是客服小李，正在查后台。"

    resolved = http(
        "POST", f"{stack.desk.url}/api/escalations/{case['id']}/resolve", {"note": "后台通道已恢复", "category": "server"}, auth
    )
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
    stack.desk.stop()
    [escalated] = walk_to_handoff(stack.say, "e2e-shop-2")
    assert "工单已保存" in escalated
    ticket = re.search(r"PX-[0-9A-Z]{6}", escalated).group(0)
    stack.desk.start()  # the same port and database
    wait_until(
        lambda: http("GET", f"{stack.desk.url}/api/escalations?ticket={ticket}", headers=auth)["escalations"],
        30,
        "the escalation to arrive",
    )

    # The outbox is empty once the action server has the desk's confirmation: still exactly one.
    def outbox_empty() -> bool:
        with sqlite3.connect(stack.directory / "outbox.sqlite") as outbox:
            return outbox.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0

    wait_until(outbox_empty, 30, "an empty outbox")
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


def test_wecom_merchant_gets_answers_and_the_agents_reply(stack, platform):
    user = "zhangsan"
    plain = text_message(user, f"pos机报1000咋整 卡号{CARD}", "9001")
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, plain, str(int(time.time())))
    assert post_callback(stack, query, body) == 200
    wait_until(lambda: len(platform.texts(user)) >= 2)
    assert platform.texts(user)[0].startswith("出现1000，按这四步排查")
    assert "1. 好，带我排查" in platform.texts(user)[1]  # the offer's buttons, numbered

    # The platform retries the same MsgId (after 5 s, three times): answered once (checked
    # below, behind the next message: a retry taken would be handled before it).
    for _ in range(3):
        assert post_callback(stack, query, body) == 200

    forged = {**query, "msg_signature": "0" * 40}
    assert post_callback(stack, forged, body) == 403
    stale_query, stale_body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, text_message(user, "hi", "9002"), "1409659589")
    assert post_callback(stack, stale_query, stale_body) == 403

    # "1" answers the numbered choice: the guided checks start.
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, text_message(user, "1", "9003"), str(int(time.time())))
    assert post_callback(stack, query, body) == 200
    wait_until(lambda: len(platform.texts(user)) >= 3)
    assert platform.texts(user)[2].startswith("第1步（共4步）：检查网络。")
    users = [e["text"] for e in stack.tracker(user)["events"] if e["event"] == "user"]
    assert len(users) == 2 and users[0] == f"pos机报1000咋整 卡号{CARD_MASKED}"  # the "1" (as its payload)

    # An agent's reply through the desk reaches the merchant in WeCom.
    auth = {"Authorization": f"Bearer {stack.desk.token}"}
    case = http(
        "POST", f"{stack.desk.url}/api/escalations", {"sender_id": user, "channel": "wecom", "language": "zh", "summary": "via wecom"}, auth
    )
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

    from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, SHOTS

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
            await page.wait_for_function("n => document.querySelectorAll('.rw-response').length > n", arg=count, timeout=30_000)

        async def click(title: str) -> None:
            count = await bot.count()
            await page.locator(".rw-reply", has_text=title).last.click()
            await page.wait_for_function("n => document.querySelectorAll('.rw-response').length > n", arg=count, timeout=30_000)

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
            "() => [...document.querySelectorAll('.rw-response')].some(e => e.innerText.includes('您的工单号是'))", timeout=30_000
        )
        await page.screenshot(path=str(SHOTS / "widget-escalated.png"))

        [case] = [
            c
            for c in http("GET", f"{stack.desk.url}/api/escalations?status=open", headers=auth)["escalations"]
            if c["channel"] == "socketio"
        ]
        http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/claim", {"agent": "小李"}, auth)
        http(
            "POST",
            f"{stack.desk.url}/api/escalations/{case['id']}/reply",
            {"text": "您好，我是客服小李，正在查后台。", "agent": "小李"},
            auth,
        )
        for expected in ("人工客服 小李 已加入对话。", "您好，我是客服小李，正在查后台。"):
            await page.wait_for_function(
                "t => [...document.querySelectorAll('.rw-response')].some(e => e.innerText.includes(t))", arg=expected, timeout=30_000
            )
        await page.screenshot(path=str(SHOTS / "widget-agent-reply.png"))

        # A reload keeps the conversation (session kept in local storage).
        await page.reload()
        await page.wait_for_selector(".rw-launcher, .rw-conversation-container")
        if not await page.locator(".rw-conversation-container").count():
            await page.click(".rw-launcher")  # the widget may come back closed
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.rw-response')].some(e => e.innerText.includes('客服小李'))", timeout=30_000
        )
        await browser.close()


def test_wechat_official_account_merchant_gets_an_answer(stack, platform):
    openid = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
    plain = text_message(openid, "what does error 1000 mean", "7001", to="gh_official")
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, WECHAT_APP_ID, plain, str(int(time.time())))
    assert post_callback(stack, query, body, channel="wechat") == 200
    wait_until(lambda: platform.texts(openid))
    assert platform.texts(openid)[0].startswith("Error 1000 usually means a system communication failure")
    # A message encrypted for another account is refused.
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, "wxsomeoneelse", plain.replace("7001", "7002"), str(int(time.time())))
    assert post_callback(stack, query, body, channel="wechat") == 403

"""The agent's tools on a case page in a real browser (Debian's chromium, Playwright).

A private note stays on the desk, "/" in the reply box inserts a canned reply that is
edited and sent with Enter, the case is transferred, resolved, and the outcome and the
merchant's rating show on the page. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

from support_desk.accounts import create_agent
from support_desk.api import STORE
from support_desk.app import create_app
from tests.harness.desk_app import AUTH, RasaDouble, desk_settings
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, SHOTS

pytestmark = pytest.mark.process  # starts processes (tests/harness/fixtures.py)

NOTE = "商户很急，<b>先别</b>提换机"


@pytest.fixture
async def desk(tmp_path):
    rasa = RasaDouble()
    rasa_url = await rasa.start()
    app = create_app(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}", rasa_url))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.password = await create_agent(app[STORE], "li", "客服小李")
    await create_agent(app[STORE], "wang", "客服小王")
    server.rasa = rasa
    yield server
    await server.close()
    await rasa.server.close()


async def test_note_canned_reply_transfer_outcome_and_rating(desk):
    assert Path(CHROMIUM).exists(), "chromium missing: apt-get install chromium (.ci/run does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = str(desk.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/escalations",
            headers=AUTH,
            json={
                "sender_id": "shop-17",
                "ticket": "PX-ABC234",
                "language": "zh",
                "channel": "socketio",
                "merchant_id": "898310048160123",
                "summary": "PAX A920 从早上开始刷卡都报1000",
                "diagnostics": [{"step": "network", "outcome": "not_fixed"}],
                "transcript": [{"role": "user", "text": "pos机报1000咋整"}],
            },
        ) as response:
            case = await response.json()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        await page.goto(f"{base}/console/login")
        await page.fill("input[name=username]", "li")
        await page.fill("input[name=password]", desk.password)
        await page.click("button[type=submit]")
        await page.wait_for_selector("#queue")
        await page.goto(f"{base}/console/cases/{case['id']}")
        await page.click("#claim")
        await page.wait_for_selector("#flash")

        # A private note: on the page, marked, as text; nothing of it reaches Rasa.
        await page.fill("#note-text", NOTE)
        await page.click("#add-note")
        await page.wait_for_selector(".msg-note")
        assert NOTE in await page.inner_text(".msg-note")
        assert "商户看不到" in await page.inner_text(".msg-note")
        assert await page.locator(".msg-note b").count() == 0

        # "/" opens the canned replies; typing filters; Enter inserts; the text stays editable.
        box = page.locator("#reply-text")
        await box.click()
        await page.keyboard.type("/")
        await page.wait_for_selector("#canned-list:not([hidden]) li")
        await page.keyboard.type("重启步骤")
        options = page.locator("#canned-list li")
        assert await options.count() == 1 and "重启步骤 · PAX A920" in await options.first.inner_text()
        await page.screenshot(path=str(SHOTS / "console-case.png"), full_page=True)
        await page.keyboard.press("Enter")
        inserted = await box.input_value()
        assert inserted.startswith("请按这个方法重启POS机：长按右侧电源键3秒")
        assert await page.locator("#canned-list").is_hidden()
        await page.keyboard.press("Shift+Enter")  # a new line, not a send
        await page.keyboard.type("——客服小李")
        assert await box.input_value() == inserted + "\n——客服小李"
        await page.keyboard.press("Enter")  # sends
        await page.wait_for_selector("#flash")
        assert "已发送" in await page.inner_text("#flash")

        # Transfer to wang; the merchant is told who joined.
        await page.select_option("#transfer-to", "wang")
        await page.click("#transfer")
        await page.wait_for_selector("#flash")
        assert "已转给 wang" in await page.inner_text("#flash")
        assert await page.inner_text("#claimed-by") == "wang"

        await page.fill("textarea[name=note]", "指导重启后恢复")
        await page.select_option("select[name=category]", "restart")
        await page.click("#resolve")
        await page.wait_for_selector("#outcome")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/escalations/{case['id']}/satisfaction", headers=AUTH, json={"rating": 5}) as response:
                assert response.status == 200
        await page.reload()
        outcome = await page.inner_text("#outcome")
        assert "重启" in outcome and "li (客服小李)" in outcome and "5/5" in outcome
        await page.screenshot(path=str(SHOTS / "console-resolved.png"), full_page=True)
        await browser.close()

    bot_texts = [e["text"] for e in desk.rasa.events["shop-17"] if e["event"] == "bot"]
    assert bot_texts[:3] == ["人工客服 客服小李 已加入对话。", inserted + "\n——客服小李", "人工客服 客服小王 已加入对话。"]
    assert all(NOTE not in text for text in bot_texts)
    assert "PX-ABC234" in bot_texts[3] and "1–5" in bot_texts[4]

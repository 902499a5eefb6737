"""The console in a real browser (Debian's chromium driven by Playwright).

login → queue → case → reply → resolve, and a merchant message carrying a <script>
payload shown as text. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import aiohttp
from playwright.async_api import async_playwright

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, PAYLOAD, SHOTS
from tests.harness.desk_app import AUTH

pytestmark = pytest.mark.process  # starts processes (tests/harness/fixtures.py)


async def test_agent_handles_a_case_in_the_browser(console_desk):
    assert Path(CHROMIUM).exists(), "chromium missing: apt-get install chromium (.ci/run does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = str(console_desk.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/escalations",
            headers=AUTH,
            json={
                "sender_id": "shop-17",
                "ticket": "PX-ABC234",
                "language": "zh",
                "priority": "high",
                "channel": "socketio",
                "merchant_id": "898310048160123",
                "contact": "13812345678",
                "summary": "从早上开始刷卡都报1000",
                "diagnostics": [{"step": "network", "outcome": "not_fixed"}, {"step": "restart", "outcome": "not_fixed"}],
                "transcript": [
                    {"role": "user", "text": "pos机报1000咋整"},
                    {"role": "bot", "text": "出现1000，按这四步排查"},
                    {"role": "user", "text": PAYLOAD},
                ],
            },
        ) as response:
            case = await response.json()

    dialogs = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 800})
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

        await page.goto(f"{base}/console")
        assert page.url.endswith("/console/login")
        await page.fill("input[name=username]", "li")
        await page.fill("input[name=password]", console_desk.password)
        await page.screenshot(path=str(SHOTS / "console-login.png"))
        await page.click("button[type=submit]")

        await page.wait_for_selector("#queue")
        assert "PX-ABC234" in await page.inner_text("#queue")
        assert "138****5678" in await page.inner_text("#queue")
        await page.screenshot(path=str(SHOTS / "console-queue.png"))

        await page.click("text=PX-ABC234")
        await page.wait_for_selector("#transcript")
        transcript = await page.inner_text("#transcript")
        assert PAYLOAD in transcript  # shown as text, not run as markup
        assert await page.locator("#transcript script, #transcript img").count() == 0

        await page.click("#claim")
        await page.fill("#reply-text", "您好，我是客服小李，正在为您查后台。")
        await page.click("#send")
        await page.wait_for_selector("#flash")
        assert "已发送" in await page.inner_text("#flash")
        await page.wait_for_timeout(1000)  # the live re-read after the reply's change renders as text too
        assert PAYLOAD in await page.inner_text("#transcript")
        assert await page.locator("#transcript script, #transcript img").count() == 0
        await page.screenshot(path=str(SHOTS / "console-case-reply.png"), full_page=True)

        await page.fill("textarea[name=note]", "后台通道已恢复")
        await page.click("#resolve")
        await page.wait_for_selector("#flash")
        assert "已结案" in await page.inner_text("#flash")
        await page.screenshot(path=str(SHOTS / "console-resolved.png"), full_page=True)

        await page.goto(f"{base}/console/lang/en")
        await page.goto(f"{base}/console/stats")
        assert "Escalations per day" in await page.inner_text("main")
        await page.screenshot(path=str(SHOTS / "console-stats.png"), full_page=True)
        await browser.close()

    assert dialogs == []
    bot_texts = [e["text"] for e in console_desk.rasa.events["shop-17"] if e["event"] == "bot"]
    assert bot_texts[:2] == ["人工客服 li 已加入对话。", "您好，我是客服小李，正在为您查后台。"]
    assert case["ticket"] == "PX-ABC234"

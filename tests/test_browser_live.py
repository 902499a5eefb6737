"""The live console in a real browser (Debian's chromium via Playwright), against a real
desk process: a new handoff appears on the open queue page without a reload and the tab
title counts it; the open case page shows a new merchant message without a reload; the
desk restarted under the open page: it reconnects and shows what was written meanwhile
(pushed by Rasa's event broker, which kept it while the desk was down)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import aiohttp
from playwright.async_api import async_playwright

from rasa_server.desk_events import DeskEventBroker
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, PAYLOAD, SHOTS
from tests.harness.desk import DESK_TOKEN as TOKEN, DeskProcess

pytestmark = pytest.mark.process  # starts processes (tests/harness/fixtures.py)

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def merchant(text: str) -> dict:
    return {"sender_id": "shop-live", "event": "user", "text": text, "timestamp": time.time()}


async def test_the_console_follows_changes_without_a_reload(tmp_path):
    assert Path(CHROMIUM).exists(), "chromium missing: apt-get install chromium (.ci/run does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    desk = DeskProcess(tmp_path)
    password = desk.password
    broker = DeskEventBroker(desk.url, TOKEN, retry_first_seconds=0.2, retry_max_seconds=1.0)
    try:
        async with async_playwright() as playwright, aiohttp.ClientSession(headers=AUTH) as api:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = await browser.new_context(viewport={"width": 1200, "height": 800})
            page = await context.new_page()
            await page.goto(f"{desk.url}/console/login")
            await page.fill("input[name=username]", "admin")
            await page.fill("input[name=password]", password)
            await page.click("button[type=submit]")
            await page.wait_for_selector("#queue")
            assert await page.inner_text("#live-alerts") == "开启提醒"
            # The agent will say yes when asked; asked from a click.
            await context.grant_permissions(["notifications"], origin=desk.url)
            await page.click("#live-alerts")
            await page.wait_for_function("document.getElementById('live-alerts').textContent === '提醒已开启'")
            await page.evaluate("window.notReloaded = true")
            title = await page.title()

            # A new handoff: a row appears, the title counts it.
            async with api.post(
                f"{desk.url}/api/escalations", json={"sender_id": "shop-live", "ticket": "PX-LLVVEE", "summary": "刷卡报1000"}
            ) as response:
                case = await response.json()
            await page.wait_for_function("document.getElementById('queue').innerText.includes('PX-LLVVEE')", timeout=5000)
            await page.wait_for_function(f"document.title === {('(1) ' + title)!r}", timeout=5000)
            assert await page.evaluate("window.notReloaded") is True
            await page.screenshot(path=str(SHOTS / "console-live-queue.png"))

            # The case page: a merchant message pushed by Rasa's broker appears as text.
            await page.click("text=PX-LLVVEE")
            await page.wait_for_selector("#transcript", state="attached")  # empty: no height
            await page.evaluate("window.notReloaded = true")
            broker.publish(merchant(PAYLOAD))
            await page.wait_for_function(f"document.getElementById('transcript').innerText.includes({PAYLOAD!r})", timeout=5000)
            assert await page.locator("#transcript script, #transcript img").count() == 0

            # The desk restarts under the open page; meanwhile the merchant writes.
            desk.stop()
            await page.wait_for_selector("#live-offline", state="visible", timeout=10000)
            broker.publish(merchant("断线时写的"))
            desk.start()  # the same port and database
            await page.wait_for_function("document.getElementById('transcript').innerText.includes('断线时写的')", timeout=30000)
            await page.wait_for_selector("#live-offline", state="hidden", timeout=10000)
            assert await page.evaluate("window.notReloaded") is True
            assert (await page.inner_text("#transcript")).count("断线时写的") == 1
            await page.screenshot(path=str(SHOTS / "console-live-case.png"), full_page=True)
            await browser.close()
        assert case["ticket"] == "PX-LLVVEE"
    finally:
        await broker.close(flush_seconds=0.1)
        desk.stop()

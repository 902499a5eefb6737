"""The console on a phone-sized screen (390x844) in Debian's chromium via Playwright, in
the Asia/Shanghai time zone: nothing runs off screen, search finds a case, the history
and repeat flag show, times are the browser's, the incident form takes local time.
Writes artifacts/screenshots/console-phone.png."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import aiohttp
from playwright.async_api import async_playwright

from tests.harness.desk_app import AUTH
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, SHOTS

pytestmark = pytest.mark.process  # starts processes (tests/harness/fixtures.py)

FITS = "document.documentElement.scrollWidth <= window.innerWidth"


def shanghai(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")


async def test_console_on_a_phone(console_desk):
    assert Path(CHROMIUM).exists(), "chromium missing: apt-get install chromium (.ci/run does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = str(console_desk.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        cases = []
        for ticket, contact in (("PX-AAA222", "13900001111"), ("PX-BBB333", "13900002222"), ("PX-CCC444", "13812345678")):
            async with http.post(
                f"{base}/api/escalations",
                headers=AUTH,
                json={
                    "sender_id": f"chat-{ticket}",
                    "ticket": ticket,
                    "language": "zh",
                    "merchant_id": "898310048160123",
                    "terminal_serial": "SN7Q2K9",
                    "contact": contact,
                    "summary": "从早上开始刷卡都报1000，重启也没用，网络看着是好的",
                    "transcript": [{"role": "user", "text": "又报1000了"}],
                },
            ) as response:
                cases.append(await response.json())
        async with http.post(
            f"{base}/api/outcomes", headers=AUTH, json={"sender_id": "chat-PX-CCC444", "outcome": "resolved", "fixed_step": "network"}
        ) as response:
            assert response.status == 201

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = await browser.new_context(viewport={"width": 390, "height": 844}, timezone_id="Asia/Shanghai")
            page = await context.new_page()
            await page.goto(f"{base}/console/login")
            await page.fill("input[name=username]", "li")
            await page.fill("input[name=password]", console_desk.password)
            await page.click("button[type=submit]")
            await page.wait_for_selector("#queue")
            assert await page.evaluate(FITS)
            header = await page.locator("header").bounding_box()
            assert header["x"] + header["width"] <= 390

            # Keyboard focus is visible (the first link in the header).
            await page.keyboard.press("Tab")
            outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("", "none")

            await page.fill("#f-q", "138 1234 5678")
            await page.press("#f-q", "Enter")
            await page.wait_for_url("**/console?q=*")
            rows = page.locator("#queue tbody tr")
            assert await rows.count() == 1
            row = await rows.first.inner_text()
            assert "PX-CCC444" in row and "138****5678" in row and "7 天内第 3 次" in row
            assert await page.evaluate(FITS)
            created = page.locator("#queue tbody time").first
            assert await created.inner_text() == shanghai(cases[2]["created_at"])
            assert await page.inner_text("[data-zone-name]") == "Asia/Shanghai"
            await page.screenshot(path=str(SHOTS / "console-phone-queue.png"), full_page=True)

            await page.click("text=PX-CCC444")
            await page.wait_for_selector("#history")
            assert await page.evaluate(FITS)
            flag = await page.inner_text("#repeat-flag")
            assert flag == "本终端 7 天内第 3 次报障：建议检查硬件或更换"
            earlier = await page.inner_text("#earlier-cases")
            assert "PX-BBB333" in earlier and "PX-AAA222" in earlier
            assert "排查后已解决 · 检查网络" in await page.inner_text("#bot-runs")
            case_time = page.locator("main time").first
            assert await case_time.inner_text() == shanghai(cases[2]["created_at"])
            assert (await case_time.get_attribute("title")).endswith("UTC")
            # The case grid is one column: the transcript card sits below the details card.
            cards = page.locator(".grid > .card")
            first, second = await cards.nth(0).bounding_box(), await cards.nth(1).bounding_box()
            assert second["y"] >= first["y"] + first["height"] and second["width"] == first["width"]
            await page.screenshot(path=str(SHOTS / "console-phone.png"), full_page=True)

            await page.goto(f"{base}/console/incidents")
            assert await page.evaluate(FITS)
            await page.fill("input[name=expected_end]", "2099-01-01T12:00")
            await page.fill("textarea[name=message_zh]", "网关维护")
            await page.fill("textarea[name=message_en]", "Gateway maintenance")
            await page.click("#post-incident")
            await page.wait_for_selector("#incident time")  # the posted incident's own page
            assert "2099-01-01 12:00" in await page.inner_text("#incident")
            for path in ("/console/stats", "/console/lang/en", "/console?older_than=abc"):
                await page.goto(f"{base}{path}")
                assert await page.evaluate(FITS), path
            assert "Enter a whole number of minutes" in await page.inner_text("#filters")
            await browser.close()

        async with http.get(f"{base}/api/incidents", headers=AUTH) as response:
            incident = (await response.json())["incidents"][0]
        assert incident["expected_end"] == "2099-01-01T04:00:00+00:00"  # 12:00 in Shanghai

"""An outage day in the real browser (Debian's chromium through Playwright): reports of
error 1000 from one city make a proposed incident, the operator confirms it on the console
(the reporting merchants are linked to one incident case), closes it, and every linked
merchant gets the "it is over" message exactly once, in their language. The screenshots
go to artifacts/screenshots/ (the README's come from here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, PAYLOAD, SHOTS
from tests.harness.desk_app import AUTH

pytestmark = pytest.mark.process  # starts chromium (tests/harness/fixtures.py)

THRESHOLD = 20  # support_desk/settings.yml incidents.proposal_threshold


def notices_of(rasa, sender: str) -> list:
    """The bot messages the desk appended to one merchant's conversation."""
    return [event for event in rasa.events.get(sender, []) if event.get("event") == "bot"]


async def test_an_outage_is_proposed_confirmed_and_everyone_told_once(console_desk):
    assert Path(CHROMIUM).exists(), "chromium missing: apt-get install chromium (.ci/run does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = str(console_desk.make_url("")).rstrip("/")
    merchants = {f"shop-{n}": ("zh" if n % 3 else "en") for n in range(THRESHOLD + 1)}
    async with aiohttp.ClientSession() as http:
        for sender, language in merchants.items():
            async with http.post(
                f"{base}/api/incidents/reports",
                headers=AUTH,
                json={
                    "sender_id": sender,
                    "channel": "socketio",
                    "language": language,
                    "kind": "reported",
                    "region": "4403",
                    "answer": "刷卡报1000",
                },
            ) as response:
                assert response.status == 202
        # One merchant elsewhere: not part of the proposal, never told.
        async with http.post(
            f"{base}/api/incidents/reports",
            headers=AUTH,
            json={"sender_id": "shop-beijing", "channel": "socketio", "language": "zh", "kind": "reported", "region": "11"},
        ) as response:
            assert response.status == 202

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 900}, locale="zh-CN")
        page.set_default_timeout(90_000)  # a loaded machine; every wait still ends
        await page.goto(f"{base}/console/login")
        await page.fill("input[name=username]", "li")
        await page.fill("input[name=password]", console_desk.password)
        await page.click("button[type=submit]")

        await page.goto(f"{base}/console/incidents")
        banner = await page.wait_for_selector("#proposals")
        # The city's 21 reports, and the widget's 22 (the Beijing shop too): two proposals.
        assert "4403" in await banner.inner_text()
        await page.click("#proposals a:has-text('4403')")
        evidence = await page.inner_text("#evidence")
        assert str(THRESHOLD + 1) in evidence and "4403" in evidence
        # Markup in a text the merchants will read is refused with its reason, as text.
        await page.fill("#confirm-form textarea[name=message_zh]", "深圳地区支付网关故障 " + PAYLOAD)
        await page.fill("#confirm-form textarea[name=message_en]", "Payment gateway outage in Shenzhen")
        await page.click("#confirm-incident")
        await page.wait_for_selector("text=不能包含 HTML 标签或实体")  # in the console's language
        assert await page.locator("script:has-text('pwned'), img[src=x]").count() == 0
        await page.fill("#confirm-form textarea[name=message_zh]", "深圳地区支付网关故障，正在抢修")
        await page.fill("#confirm-form textarea[name=message_en]", "Payment gateway outage in Shenzhen")
        await page.click("#confirm-incident")
        await page.wait_for_selector("#close-form")
        incident_text = await page.inner_text("#incident")
        assert "深圳地区支付网关故障" in incident_text and "深圳市 (4403)" in incident_text  # the region by name
        linked = await page.inner_text("#linked")
        assert all(sender in linked for sender in merchants) and "shop-beijing" not in linked
        await page.screenshot(path=str(SHOTS / "console-incident.png"))

        await page.fill("#close-form textarea[name=note]", "网关已恢复")
        await page.click("#close-incident")
        for _ in range(240):  # bounded (2 min on a loaded machine): the notices go out in the background
            if all(notices_of(console_desk.rasa, sender) for sender in merchants):
                break
            await asyncio.sleep(0.5)
            await page.reload()
        counts = await page.inner_text("#notice-counts")
        assert f"{THRESHOLD + 1}" in counts
        await page.screenshot(path=str(SHOTS / "console-incident-closed.png"), full_page=True)
        # Closing again (the API) plans nothing more.
        async with aiohttp.ClientSession() as http:
            incident_id = int(page.url.rstrip("/").split("/")[-1])
            async with http.post(f"{base}/api/incidents/{incident_id}/close", headers=AUTH, json={}) as response:
                assert (await response.json())["notices_planned"] == 0
        await browser.close()

    for sender, language in merchants.items():
        told = notices_of(console_desk.rasa, sender)
        assert len(told) == 1, (sender, told)
        assert ("支付服务已恢复" in told[0]["text"]) == (language == "zh"), told[0]["text"]
    assert notices_of(console_desk.rasa, "shop-beijing") == []

"""The operator's learning pages in the real browser (Debian's chromium through Playwright):
a message the bot did not understand is in the NLU inbox, shown as text; the operator picks
the intent from the searchable list and the label is written to the reviewed file; then
the operator changes a terminal model's latest version on the knowledge page and the file
says so. Screenshots go to artifacts/screenshots/ (the README's come from here)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from playwright.async_api import async_playwright

from support_desk import incident_input
from support_desk.api import SETTINGS
from support_desk.knowledge_console import KNOWLEDGE
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, log_in, PAYLOAD, SHOTS
from tests.harness.desk_app import AUTH

pytestmark = pytest.mark.process  # starts chromium (tests/harness/fixtures.py)


def user(text: str, at: float, intent: str, confidence: float, sender: str) -> dict:
    """A merchant's message as Rasa's event broker pushes it, with what NLU made of it."""
    nlu = {"intent": intent, "confidence": confidence, "ranking": [{"name": intent, "confidence": confidence}], "clicked": False}
    return {"sender_id": sender, "event": "user", "text": text, "timestamp": at, "nlu": nlu}


async def test_an_operator_labels_the_inbox_and_edits_knowledge(console_desk, tmp_path):
    assert Path(CHROMIUM).exists(), "chromium missing: apt-get install chromium (.ci/run does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    terminals = tmp_path / "terminals.yml"
    terminals.write_bytes(incident_input.TERMINALS_FILE.read_bytes())
    console_desk.app[KNOWLEDGE].terminals_path = terminals
    base = str(console_desk.make_url("")).rstrip("/")
    now = time.time()
    events = [
        user("刷咔机一直司机怎么搞", now, "ask_is_hardware", 0.31, "shop-1"),
        user("刷咔机一直司机怎么搞", now + 1, "ask_is_hardware", 0.28, "shop-2"),
        user("pos ji zhuan rengong", now + 2, "greet", 0.22, "shop-3"),
        user(f"机器屏幕显示 {PAYLOAD}", now + 3, "ask_error_meaning", 0.4, "shop-4"),
    ]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/rasa/events", headers=AUTH, json={"events": events}) as response:
            assert response.status == 200

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 900}, locale="zh-CN")
        page.set_default_timeout(90_000)
        await log_in(page, base, "li", console_desk.password)

        await page.click("#nav-nlu")
        await page.wait_for_selector("text=刷咔机一直司机怎么搞")
        assert await page.locator("script:has-text('pwned'), img[src=x]").count() == 0
        await page.screenshot(path=str(SHOTS / "console-nlu-inbox.png"), full_page=True)
        row = page.locator("tr", has_text="刷咔机一直司机怎么搞")
        await row.locator("input[name=intent]").fill("ask_is_hardware")
        await row.locator("button", has_text="确认").click()
        await page.wait_for_selector("text=已标注为 ask_is_hardware")
        reviewed = yaml.safe_load(console_desk.app[SETTINGS].nlu_reviewed_file.read_text(encoding="utf-8"))
        assert {"intent": "ask_is_hardware", "examples": "- 刷咔机一直司机怎么搞\n"} in reviewed["nlu"]

        await page.click("#nav-knowledge")
        await page.click("#model-pax_a920 summary")
        await page.fill("#model-pax_a920 input[name=latest_version]", "3.3.0")
        await page.screenshot(path=str(SHOTS / "console-knowledge.png"), full_page=False)
        await page.click("#model-pax_a920 button.primary")
        await page.wait_for_selector("text=已保存：PAX A920")
        assert yaml.safe_load(terminals.read_text(encoding="utf-8"))["models"]["pax_a920"]["latest_version"] == "3.3.0"
        await browser.close()

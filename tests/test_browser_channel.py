"""What the WeCom KF channel reports, in a real browser (Debian's chromium via Playwright)
against a real desk process: a reply the channel holds reads "not delivered (reason):
waiting for the merchant to write" on the case page and turns "delivered" without a
reload when the channel sends it; a picture the merchant sent shows as an image, the
one posted while the page is open too."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import aiohttp
from playwright.async_api import async_playwright

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, SHOTS
from tests.harness.desk import DESK_TOKEN as TOKEN, DeskProcess

pytestmark = pytest.mark.process  # starts processes (tests/harness/fixtures.py)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SENDER = "wkKF01:wmBROWSER"


def png(width: int, height: int, rgb: bytes) -> bytes:
    """A real PNG of one colour (the browser must decode it, so no placeholder bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + rgb * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def report(report_id: str, at: float, **fields) -> dict:
    return {"kind": "delivery", "report_id": report_id, "sender_id": SENDER, "channel": "wecom_kf", "at": at, **fields}


async def test_held_words_and_pictures_on_the_case_page(tmp_path):
    assert Path(CHROMIUM).exists(), "chromium missing: apt-get install chromium (.ci/run does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    desk = DeskProcess(tmp_path)
    password = desk.password
    try:
        async with async_playwright() as playwright, aiohttp.ClientSession(headers=AUTH) as api:

            async def call(path: str, **kwargs) -> dict:
                async with api.post(f"{desk.url}{path}", **kwargs) as response:
                    assert response.status < 300, await response.text()
                    return await response.json()

            case = await call(
                "/api/escalations", json={"sender_id": SENDER, "channel": "wecom_kf", "ticket": "PX-KFBRWS", "summary": "报1000"}
            )
            # Rasa is away here: the reply is kept; the channel's report is what counts.
            sent = await call(f"/api/escalations/{case['id']}/reply", json={"text": "请重启终端", "agent": "li"})
            await call(
                "/api/channel/reports",
                json={
                    "reports": [
                        report(
                            "r-held",
                            1_764_000_000,
                            desk_message_id=sent["id"],
                            text="请重启终端",
                            state="held",
                            reason="5 messages sent since the merchant last wrote",
                        )
                    ]
                },
            )
            query = {"sender_id": SENDER, "channel": "wecom_kf"}
            await call(
                "/api/channel/attachments",
                params={**query, "msgid": "pic-1"},
                data=png(40, 30, b"\xd0\x20\x20"),
                headers={"Content-Type": "image/png"},
            )

            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await (await browser.new_context(viewport={"width": 1200, "height": 900})).new_page()
            await page.goto(f"{desk.url}/console/lang/en")
            await page.goto(f"{desk.url}/console/login")
            await page.fill("input[name=username]", "admin")
            await page.fill("input[name=password]", password)
            await page.click("button[type=submit]")
            await page.wait_for_selector("#queue")
            await page.goto(f"{desk.url}/console/cases/{case['id']}")
            transcript = page.locator("#transcript")
            assert (
                "Not delivered (5 messages sent since the merchant last wrote): waiting for the merchant to write"
            ) in await transcript.inner_text()
            first = page.locator("#transcript img.attachment")
            await first.wait_for()
            # Decoded by the browser: the desk served the stored bytes as the stored type.
            await page.wait_for_function("document.querySelector('#transcript img.attachment').naturalWidth === 40", timeout=5000)
            await page.evaluate("window.notReloaded = true")

            # The merchant wrote again: the channel sent the reply, and another picture came.
            await call(
                "/api/channel/reports",
                json={"reports": [report("r-sent", 1_764_000_600, desk_message_id=sent["id"], text="请重启终端", state="sent")]},
            )
            await call(
                "/api/channel/attachments",
                params={**query, "msgid": "pic-2"},
                data=png(16, 16, b"\x20\x60\xd0"),
                headers={"Content-Type": "image/png"},
            )
            await page.wait_for_function(
                "[...document.querySelectorAll('#transcript img.attachment')].filter(img => img.naturalWidth === 16).length === 1",
                timeout=5000,
            )
            text = await transcript.inner_text()
            assert "Not delivered" not in text and "delivered" in text
            assert await page.evaluate("window.notReloaded") is True
            await page.screenshot(path=str(SHOTS / "console-channel-reports.png"), full_page=True)
            await browser.close()
    finally:
        desk.stop()

"""The stock rasa-webchat widget (``storage: local``, the help page ``/chat``) in Debian's
chromium on a phone-sized screen, against real Rasa, action server and desk: what was
said while the merchant was away (tab closed, another tab, network lost on a half-open connection) appears when
the widget is back, in order, each once; multi-line text keeps its lines; markup an
agent typed shows as typed.

Every "still once" check first waits for a barrier: an answer to a message sent after
the widget reconnected. The catch-up runs in Rasa's conversation lock before that
message is handled, so anything it would send has arrived by then.
"""

from __future__ import annotations

import asyncio
import itertools
import urllib.parse
from typing import Any, AsyncIterator, List

import pytest

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.processes import ROOT
from tests.harness.http import http
from tests.harness.stack import RASA_TOKEN, Stack

PHONE = {"width": 375, "height": 812}
SCREENSHOT = ROOT / "docs" / "screenshots" / "widget-phone.png"
BOT_TEXTS = """els => els.map(e => e.innerText)"""
_desk_ids = itertools.count(9000)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def phone(browser: Any) -> Any:
    """A browser context the size of a phone (one browser's storage: its tabs share it)."""
    return await browser.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN")


async def open_chat(context: Any, stack: Stack) -> Any:
    """A new tab on the help page, the widget connected (session confirmed) and open."""
    page = await context.new_page()
    async with page.expect_console_message(lambda m: "session_confirm" in m.text, timeout=30_000):
        await page.goto(f"{stack.desk.url}/chat?lang=zh")
    if not await page.locator(".rw-conversation-container").count():
        await page.click(".rw-launcher")
    await page.wait_for_selector(".rw-conversation-container")
    return page


async def bot_texts(page: Any) -> List[str]:
    """The bot's messages in the widget, as the merchant reads them."""
    return await page.locator(".rw-response .rw-markdown").evaluate_all(BOT_TEXTS)


async def wait_for_text(page: Any, text: str, timeout: int = 30_000) -> None:
    await page.wait_for_function(
        "t => [...document.querySelectorAll('.rw-response .rw-markdown')].some(e => e.innerText.includes(t))", arg=text, timeout=timeout
    )


async def say(page: Any, text: str) -> None:
    """Type a message and wait for the next bot message."""
    count = await page.locator(".rw-response .rw-markdown").count()
    await page.fill(".rw-new-message", text)
    await page.press(".rw-new-message", "Enter")
    await page.wait_for_function("n => document.querySelectorAll('.rw-response .rw-markdown').length > n", arg=count, timeout=30_000)


async def session_of(page: Any) -> str:
    return await page.evaluate("JSON.parse(localStorage.getItem('chat_session')).session_id")


def agent_says(stack: Stack, session: str, text: str) -> None:
    """A desk message into the conversation the way the desk sends it (Rasa's HTTP API)."""
    query = urllib.parse.urlencode({"output_channel": "latest", "execute_side_effects": "true", "token": RASA_TOKEN})
    http(
        "POST",
        f"{stack.rasa_url}/conversations/{session}/tracker/events?{query}",
        [{"event": "bot", "text": text, "metadata": {"desk_message_id": next(_desk_ids)}}],
    )


def once_in_order(seen: List[str], expected: List[str]) -> None:
    for text in expected:
        assert seen.count(text) == 1, (text, seen)
    positions = [seen.index(text) for text in expected]
    assert positions == sorted(positions), seen


async def answered_barrier(page: Any) -> None:
    await say(page, "1000是什么意思")
    await wait_for_text(page, "错误码1000一般表示")


async def test_closed_tab_sees_the_agents_reply_and_the_closing_message_once(stack, browser):
    context = await phone(browser)
    page = await open_chat(context, stack)
    for text in ("转人工", "终端号20481234", "13812345678"):
        await say(page, text)
    await say(page, "从早上开始刷卡都报1000")
    await wait_for_text(page, "您的工单号是")
    session = await session_of(page)
    await page.close()  # the merchant leaves

    auth = {"Authorization": f"Bearer {stack.desk.token}"}
    [case] = http("GET", f"{stack.desk.url}/api/escalations?sender_id={urllib.parse.quote(session)}", headers=auth)["escalations"]
    reply = "您好，我是客服小李：\n1. 先重启POS机\n2. *再试* 一笔 <b>小额</b> [交易](javascript:alert(1))"
    http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/claim", {"agent": "小李"}, auth)
    http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/reply", {"text": reply, "agent": "小李"}, auth)
    http("POST", f"{stack.desk.url}/api/escalations/{case['id']}/resolve", {"note": "已恢复", "category": "server"}, auth)
    said_while_away = [
        e["text"] for e in stack.tracker(session)["events"] if e["event"] == "bot" and e.get("metadata", {}).get("desk_message_id")
    ]
    # joined, the reply, the closing message, the rating question
    assert len(said_while_away) == 4 and said_while_away[1] == reply

    page = await open_chat(context, stack)  # back, in a new tab of the same browser
    await wait_for_text(page, said_while_away[-1])
    await answered_barrier(page)
    seen = await bot_texts(page)
    once_in_order(seen, said_while_away)
    assert seen.index(said_while_away[0]) > max(i for i, t in enumerate(seen) if "您的工单号是" in t)
    # The agent's markup is text: no link, no emphasis, no bold, no list.
    message = page.locator(".rw-response .rw-markdown", has_text="您好，我是客服小李")
    assert await message.locator("a, em, strong, b, ol, ul, li").count() == 0
    assert await message.locator("br").count() == 2

    await page.reload()  # and once more: nothing is sent a second time
    await page.wait_for_selector(".rw-launcher, .rw-conversation-container")
    if not await page.locator(".rw-conversation-container").count():
        await page.click(".rw-launcher")
    await answered_barrier(page)
    once_in_order(await bot_texts(page), said_while_away)
    await context.close()


async def test_other_tabs_of_the_same_browser_see_each_message_once(stack, browser):
    context = await phone(browser)
    first = await open_chat(context, stack)
    await say(first, "你好")
    session = await session_of(first)
    second = await open_chat(context, stack)  # opened while the first is open
    assert await session_of(second) == session

    agent_says(stack, session, "两个页面都开着")
    for page in (first, second):
        await wait_for_text(page, "两个页面都开着")
    await first.close()
    agent_says(stack, session, "第一个页面关了")
    await wait_for_text(second, "第一个页面关了")
    await second.close()
    agent_says(stack, session, "两个页面都关了")

    third = await open_chat(context, stack)  # opened while both are closed
    await wait_for_text(third, "两个页面都关了")
    fourth = await open_chat(context, stack)  # and one more while the third is open
    await answered_barrier(fourth)
    await answered_barrier(third)
    for page in (third, fourth):
        once_in_order(await bot_texts(page), ["两个页面都开着", "第一个页面关了", "两个页面都关了"])
    await context.close()


class CuttableLink:
    """A TCP relay on 127.0.0.1 between the browser and Rasa that can lose the network.

    Cut, it drops every byte in both directions and closes nothing, as a lost mobile
    network does: both ends keep a half-open connection until their pings go unanswered.
    (Chromium's offline mode is no such test: it keeps an open WebSocket and delivers
    what was sent meanwhile once back online, so the widget would see the reply without
    any catch-up.) New connections while cut are closed at once, as a failed dial is.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut = False
        self.redialled = asyncio.Event()  # the browser gave its connection up and dials again
        self.server: Any = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            self.redialled.set()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if not self.cut:
                    sink.write(data)
                    await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def test_a_reply_sent_into_a_half_open_connection_arrives_after_the_reconnect(stack, browser):
    link = CuttableLink(stack.rasa_port)
    link_url = f"http://127.0.0.1:{await link.start()}"
    context = await phone(browser)

    # The help page stays as served; the widget is pointed at the link when the page hands
    # it its settings. (A page rewritten by a route counts as public to Chromium, which then
    # refuses its requests to a loopback address.)
    await context.add_init_script(f"""
        let webchat;
        Object.defineProperty(window, "WebChat", {{
            configurable: true,
            get: () => webchat,
            set: (module) => {{
                const start = module.default;
                module.default = (config, ...rest) => start({{...config, socketUrl: "{link_url}"}}, ...rest);
                webchat = module;
            }},
        }});""")
    page = await open_chat(context, stack)
    await say(page, "你好")
    session = await session_of(page)
    agent_says(stack, session, "网络断开之前")
    await wait_for_text(page, "网络断开之前")

    link.cut = True
    agent_says(stack, session, "网络断开的时候")  # goes into the dead connection and is lost
    # The widget notices the silence (ping interval + timeout, 20 s in credentials.yml),
    # gives the connection up and dials again; only then is the network back.
    await asyncio.wait_for(link.redialled.wait(), timeout=90)
    assert "网络断开的时候" not in await bot_texts(page)
    link.cut = False
    await wait_for_text(page, "网络断开的时候", timeout=60_000)  # the widget redials and catches up
    await answered_barrier(page)
    once_in_order(await bot_texts(page), ["网络断开之前", "网络断开的时候"])
    await context.close()
    await link.stop()


async def test_multi_line_answers_keep_their_lines_on_a_phone(stack, browser):
    context = await phone(browser)
    page = await open_chat(context, stack)
    await say(page, "pos机报1000怎么办")
    count = await page.locator(".rw-response .rw-markdown").count()
    await page.locator(".rw-reply", has_text="好，带我排查").last.click()
    await page.wait_for_function("n => document.querySelectorAll('.rw-response .rw-markdown').length > n", arg=count, timeout=30_000)
    await wait_for_text(page, "第1步（共4步）")
    step = page.locator(".rw-response .rw-markdown", has_text="第1步（共4步）").last
    lines = (await step.inner_text()).split("\n")
    assert lines[0] == "第1步（共4步）：检查网络。"
    assert [line.split("：")[0] for line in lines[1:4]] == ["• 流量卡", "• Wi-Fi", "• 网线"]
    assert len(lines) == 5 and await step.locator("br").count() == 4
    # On screen, each line begins at the left edge, below the one before (long ones wrap).
    starts = await step.evaluate("""el => {
        const p = el.querySelector('p'), left = p.getBoundingClientRect().left, r = document.createRange();
        const firsts = [p.firstChild, ...[...p.querySelectorAll('br')].map(br => br.nextSibling)];
        return firsts.map(node => { r.setStart(node, 0); r.setEnd(node, 1);
                                    const box = r.getBoundingClientRect();
                                    return [Math.round(box.left - left), box.top]; }); }""")
    assert [left for left, _ in starts] == [0] * 5
    tops = [top for _, top in starts]
    assert tops == sorted(tops) and len(set(tops)) == 5

    session = await session_of(page)
    typed = "**不是粗体** <i>不是斜体</i> [链接](javascript:alert(1)) 1. 不是列表\n# 不是标题"
    agent_says(stack, session, typed)
    await wait_for_text(page, "不是列表")
    shown = page.locator(".rw-response .rw-markdown", has_text="不是列表")
    assert await shown.inner_text() == typed
    assert await shown.locator("a, strong, i, em, ol, h1").count() == 0
    # The markdown is the widget's rendering only: the tracker (and so the desk) keeps the text.
    assert [e["text"] for e in stack.tracker(session)["events"] if e["event"] == "bot"][-1] == typed
    await step.scroll_into_view_if_needed()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT))
    await context.close()

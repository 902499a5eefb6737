"""Whole conversations with the trained model and a real action server on loopback.

The model (models/pos1000.tar.gz, built by `make train`) answers through Rasa's Agent;
the custom actions run in a `rasa run actions` process; the server-status step asks an
incident board served over HTTP on 127.0.0.1. Each bot message is compared with the
domain's variation for the merchant's language.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "pos1000.tar.gz"



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class IncidentBoard:
    """An incident board on 127.0.0.1 whose incidents the test sets."""

    def __init__(self) -> None:
        self.incidents: List[Dict] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    def _serve(self) -> None:
        async def incidents(_: web.Request) -> web.Response:
            return web.json_response({"incidents": self.incidents})

        async def start() -> None:
            app = web.Application()
            app.router.add_get("/api/incidents", incidents)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(start())
        self._loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/incidents"


@pytest.fixture(scope="module")
def board() -> IncidentBoard:
    return IncidentBoard()


@pytest.fixture(scope="module")
def action_server(board) -> Iterator[str]:
    """`rasa run actions` on a free loopback port; stopped by PID afterwards."""
    port = free_port()
    env = {**os.environ, "INCIDENT_BOARD_URL": board.url, "UPSTREAM_STATUS_URL": ""}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("rasa")), "run", "actions", "--actions", "actions",
         "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("action server did not start")
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}/webhook"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def agent(action_server):
    from rasa.core.agent import Agent
    from rasa.utils.endpoints import EndpointConfig

    assert MODEL.exists(), "no trained model: run `make train` (make test does it first)"

    return Agent.load(str(MODEL), action_endpoint=EndpointConfig(url=action_server))


@pytest.fixture(scope="module")
def variations(agent):
    """Response name → {language: text} from the model's domain."""
    table = {}
    for name, options in agent.domain.responses.items():
        texts = {}
        for option in options:
            conditions = option.get("condition") or []
            language = next((c["value"] for c in conditions if c["name"] == "language"), "zh")
            texts[language] = option.get("text", "")
        table[name] = texts
    return table


class Chat:
    """One merchant's conversation with the agent."""

    def __init__(self, agent, sender: str) -> None:
        self.agent, self.sender = agent, sender

    async def say(self, text: str) -> List[Dict]:
        return await self.agent.handle_text(text, sender_id=self.sender) or []

    async def texts(self, text: str) -> List[str]:
        return [message.get("text", "") for message in await self.say(text)]

    async def slot(self, name: str):
        tracker = await self.agent.tracker_store.get_or_create_tracker(self.sender)
        return tracker.get_slot(name)


def starts_like(text: str, template: str) -> bool:
    """The bot text is the template up to its first placeholder."""
    return text.startswith(template.split("{")[0])


@pytest.mark.parametrize(
    "text, intent",
    [
        ("pos机报1000咋整", "ask_how_to_fix"),
        ("terminal shows 1000 help", "ask_how_to_fix"),
        ("转人工", "request_human"),
        ("talk to a human", "request_human"),
        ("顾客的钱扣了吗", "ask_affects_transactions"),
        ("what does error 1000 mean", "ask_error_meaning"),
    ],
)
async def test_key_phrases_are_understood(agent, text, intent):
    parsed = await agent.parse_message(text)
    assert parsed["intent"]["name"] == intent


async def test_each_answer_is_in_the_merchants_language(agent, variations):
    zh, en = Chat(agent, "lang-zh"), Chat(agent, "lang-en")
    assert await zh.texts("1000是什么意思") == [variations["utter_error_meaning"]["zh"]]
    assert await en.texts("what does error 1000 mean") == [variations["utter_error_meaning"]["en"]]
    # A message with no words keeps the language the merchant already uses.
    assert await en.say("/ask_is_hardware") and await en.slot("language") == "en"
    assert await zh.texts("会扣钱吗") == [variations["utter_affects_transactions"]["zh"]]


async def test_zh_whole_diagnostics_without_a_fix(agent, board, variations):
    board.incidents = []
    chat = Chat(agent, "zh-unresolved")
    assert await chat.texts("pos机报1000咋整") == [
        variations["utter_how_to_fix"]["zh"],
        variations["utter_offer_diagnostics"]["zh"],
    ]
    assert await chat.texts("好") == [variations["utter_ask_network_ok"]["zh"]]

    # An FAQ question in the middle gets its answer and the same step is asked again.
    replies = await chat.texts("对了 手续费怎么收")
    assert replies[-1] == variations["utter_ask_network_ok"]["zh"] and len(replies) == 2

    [model_question] = await chat.say("还是不行")
    assert model_question["text"] == variations["utter_ask_terminal_model"]["zh"]
    assert len(model_question["buttons"]) == 6

    [restart] = await chat.texts('/inform{"terminal_model": "pax_a920"}')
    assert starts_like(restart, variations["utter_ask_restart_ok"]["zh"])
    assert "(PAX A920)" in restart and "长按右侧电源键3秒" in restart

    [server] = await chat.texts("还是报1000")
    assert server == variations["utter_ask_server_ok_clear"]["zh"]

    [version] = await chat.texts("不行")
    assert starts_like(version, variations["utter_ask_software_version"]["zh"])
    assert "设置 → 关于本机" in version

    replies = await chat.texts("版本3.2.1")
    assert replies == [
        "3.2.1 已经是这个型号的最新版本，不需要更新。",
        variations["utter_diagnostics_unresolved"]["zh"],
        variations["utter_contact_support"]["zh"],
    ]
    assert await chat.slot("diagnostics_outcome") == "unresolved"


async def test_en_whole_diagnostics_fixed_by_the_update(agent, board, variations):
    board.incidents = []
    chat = Chat(agent, "en-software")
    assert await chat.texts("walk me through the checks") == [
        variations["utter_ask_network_ok"]["en"]
    ]
    assert await chat.texts("still 1000") == [variations["utter_ask_terminal_model"]["en"]]
    [restart] = await chat.texts("its a newland N910")
    assert "(新大陆 N910)" in restart and "Hold the power key on top" in restart
    assert await chat.texts("no still broken") == [variations["utter_ask_server_ok_clear"]["en"]]
    [version] = await chat.texts("nope")
    assert "Settings → About device → Application version." in version
    [update] = await chat.texts("2.1.0")
    assert update.startswith("Version 2.1.0 is older than the latest, 2.8.0")
    replies = await chat.say("updated and it works now")
    assert [m.get("text") for m in replies] == [
        "Great, the terminal works again! It was fixed at the software update step.",
        variations["utter_prevention"]["en"],
        variations["utter_ask_rating"]["en"],
    ]
    assert len(replies[-1]["buttons"]) == 5
    assert await chat.slot("fixed_step") == "software"
    assert await chat.texts('/rate{"rating": "5"}') == [variations["utter_thanks_rating"]["en"]]
    assert await chat.slot("rating") == 5.0


async def test_known_outage_ends_the_checks(agent, board, variations):
    board.incidents = [
        {
            "id": 1,
            "status": "active",
            "region": "全国",
            "message": {"zh": "支付网关维护中。", "en": "Payment gateway maintenance."},
            "expected_end": "2026-11-25T14:00:00+08:00",
        }
    ]
    chat = Chat(agent, "zh-incident")
    await chat.say("开始排查")
    await chat.say("/inform_not_fixed")
    await chat.say("/dont_know")
    [server] = await chat.texts("/inform_not_fixed")
    assert "支付网关维护中。" in server and "2026-11-25 14:00" in server
    [wait] = await chat.texts("还是不行")
    assert starts_like(wait, variations["utter_incident_wait"]["zh"])
    assert await chat.slot("diagnostics_outcome") == "known_incident"


async def test_human_leaves_the_checks(agent, board, variations):
    board.incidents = []
    chat = Chat(agent, "en-human")
    await chat.say("check it step by step")
    assert await chat.texts("human please") == [
        variations["utter_handoff_unavailable"]["en"],
        variations["utter_contact_support"]["en"],
    ]
    tracker = await agent.tracker_store.get_or_create_tracker("en-human")
    assert tracker.active_loop_name is None

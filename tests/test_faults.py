"""Faults with real processes on 127.0.0.1: each part of the stack goes away and comes back.

The stack is wired as `make run` wires it (tests/harness/stack.py: the Procfile's
production commands — REST channel, HTTP API, SQL tracker store on a file — the action
server, the support desk) with the desk on a PostgreSQL of its own (``tests/pg_server.py``)
so that its database can be stopped on its own.

* action server killed mid-diagnostics → the merchant is told the check cannot be done
  now and offered a person; Rasa keeps running; action server back → the same step
  continues (``policies/action_server_down.py``);
* Rasa restarted → a conversation in the middle of the checks continues at its step and
  a paused one (escalated) stays paused: the bot is quiet, the agent's reply still
  reaches the merchant, resolving hands the merchant back to the bot;
* Rasa down when an agent replies → 202 ``delivered: false``, the API and the console
  show it as not delivered, the desk keeps it and delivers it once when Rasa is back;
* the desk's database down → 503 with a JSON error; an escalation made meanwhile waits
  in the action server's outbox and arrives exactly once; earlier cases are all there.

(Desk process down during an escalation: ``tests/test_e2e_handoff.py::
test_desk_down_escalation_arrives_once_when_it_is_back``.)

``FAULTS_MODEL`` may point at another model file while developing; by default the
project's model is used.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from tests.harness.http import request
from tests.harness.processes import MODEL, ROOT, wait_until
from tests.harness.stack import Stack, walk_to_handoff
from tests.pg_server import PostgresServer

MODEL_FILE = Path(os.environ.get("FAULTS_MODEL") or MODEL)

CANNOT_CHECK = "抱歉，我现在连不上后台检查系统"
ASK_MODEL = "第2步（共4步）：重启。您的POS机是什么型号"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the module's own: a test stops and starts it."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("faults"), database_url=postgres.create_database("faults_desk"), model=MODEL_FILE)
    yield running
    running.stop()


def to_model_question(stack: Stack, sender: str) -> None:
    """Start the checks and answer the network step: the bot asks for the terminal model."""
    stack.answers(sender, "/start_diagnostics")
    [question] = stack.say(sender, "/inform_not_fixed")
    assert question.startswith(ASK_MODEL), question


def at_step(stack: Stack, sender: str, slot: str) -> bool:
    tracker = stack.tracker(sender)
    return tracker["active_loop"].get("name") == "diagnostics_form" and tracker["slots"]["requested_slot"] == slot


def test_action_server_killed_mid_diagnostics_then_back(stack):
    merchant = "faults-shop-actions"
    to_model_question(stack, merchant)

    stack.kill_actions()
    [answer] = stack.answers(merchant, '/inform{"terminal_model": "pax_a920"}')
    assert answer["text"].startswith(CANNOT_CHECK)
    assert answer["buttons"] == [{"title": "转人工", "payload": "/request_human"}]
    assert stack.rasa.poll() is None  # no crash
    assert at_step(stack, merchant, "terminal_model")  # the checks wait where they were
    events = stack.tracker(merchant)["events"]
    last_user = max(i for i, e in enumerate(events) if e["event"] == "user")
    # One failed run of the form, one answer, then Rasa listens: no re-run loop.
    assert [e["name"] for e in events[last_user:] if e["event"] == "action"] == [
        "diagnostics_form",
        "utter_cannot_check_now",
        "action_listen",
    ]
    # Writing again while it is still down gets the same honest answer, not silence.
    assert stack.say(merchant, '/inform{"terminal_model": "pax_a920"}')[0].startswith(CANNOT_CHECK)

    stack.start_actions()
    [restart] = stack.say(merchant, '/inform{"terminal_model": "pax_a920"}')
    assert "(PAX A920)" in restart and "长按右侧电源键3秒" in restart, restart
    assert at_step(stack, merchant, "restart_ok")


def test_action_server_down_in_english(stack):
    merchant = "faults-shop-actions-en"
    assert stack.answers(merchant, "walk me through the checks")
    stack.kill_actions()
    try:
        [answer] = stack.answers(merchant, "still 1000")
        assert answer["text"].startswith("Sorry, I can't reach our checking system right now")
        assert answer["buttons"] == [{"title": "Talk to a person", "payload": "/request_human"}]
    finally:
        stack.start_actions()
    [question] = stack.say(merchant, "still 1000")
    assert question.startswith("Step 2 of 4: restart. Which terminal model"), question


def case_of(stack: Stack, ticket: str) -> Dict[str, Any]:
    [case] = stack.desk_api("GET", f"/api/escalations?ticket={ticket}")[1]["escalations"]
    return stack.desk_api("GET", f"/api/escalations/{case['id']}")[1]


def escalate(stack: Stack, sender: str) -> Dict[str, Any]:
    escalated = walk_to_handoff(stack.say, sender)[-1]
    ticket = re.search(r"PX-[0-9A-Z]{6}", escalated).group(0)
    assert stack.tracker(sender)["paused"] is True
    return case_of(stack, ticket)


def bot_texts(stack: Stack, sender: str) -> List[str]:
    return [e.get("text") for e in stack.tracker(sender)["events"] if e["event"] == "bot"]


def test_rasa_restart_keeps_every_conversation_where_it_was(stack):
    checking, paused = "faults-shop-checking", "faults-shop-paused"
    to_model_question(stack, checking)
    case = escalate(stack, paused)

    stack.stop_rasa()
    stack.start_rasa()

    # Mid-checks: the next answer is taken by the same step.
    [restart] = stack.say(checking, '/inform{"terminal_model": "pax_a920"}')
    assert "(PAX A920)" in restart and "长按右侧电源键3秒" in restart, restart
    # Paused: the bot stays quiet, the message is kept for the agent, the agent's reply
    # arrives, and resolving gives the merchant back to the bot.
    assert stack.tracker(paused)["paused"] is True
    assert stack.answers(paused, "重启之后还在吗") == []
    transcript = stack.desk_api("GET", f"/api/escalations/{case['id']}")[1]["transcript"]
    assert [m["text"] for m in transcript if m["kind"] == "merchant"] == ["重启之后还在吗"]
    status, reply = stack.desk_api("POST", f"/api/escalations/{case['id']}/reply", {"text": "您好，我是客服小李。", "agent": "li"})
    assert status == 201 and reply["delivered"] is True
    assert bot_texts(stack, paused)[-1] == "您好，我是客服小李。"
    status, resolved = stack.desk_api("POST", f"/api/escalations/{case['id']}/resolve", {"note": "ok"})
    assert resolved["bot_resumed"] is True and stack.tracker(paused)["paused"] is False
    assert stack.say(paused, "1000是什么意思")[0].startswith("错误码1000一般表示")


async def console_case_page(stack: Stack, case_id: int) -> str:
    """The case page as an agent sees it (a fresh account, a real login with CSRF)."""
    import aiohttp

    created = subprocess.run(
        [sys.executable, "-m", "support_desk.accounts", "create", "faults-agent"],
        cwd=ROOT,
        env=stack.desk.env,
        capture_output=True,
        text=True,
        check=True,
    )
    password = created.stdout.strip().split()[-1]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        form = await (await session.get(f"{stack.desk_url}/console/login")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        await session.post(f"{stack.desk_url}/console/login", data={"csrf": csrf, "username": "faults-agent", "password": password})
        async with session.get(f"{stack.desk_url}/console/cases/{case_id}") as page:
            assert page.status == 200 and str(page.url).endswith(f"/console/cases/{case_id}")
            return await page.text()


async def test_agent_reply_while_rasa_is_down_is_kept_and_delivered_once(stack):
    merchant = "faults-shop-reply"
    case = escalate(stack, merchant)
    stack.stop_rasa()
    try:
        status, reply = stack.desk_api(
            "POST", f"/api/escalations/{case['id']}/reply", {"text": "您好，Rasa不在时写的回复。", "agent": "li"}
        )
        assert status == 202 and reply["delivered"] is False
        [kept] = [m for m in stack.desk_api("GET", f"/api/escalations/{case['id']}")[1]["transcript"] if m["role"] == "agent"]
        assert kept["text"] == "您好，Rasa不在时写的回复。" and kept["delivered"] is False
        page = await console_case_page(stack, case["id"])
        assert "您好，Rasa不在时写的回复。" in page and "未送达，自动重试中" in page
    finally:
        stack.start_rasa()
    # The desk's retry loop (every 10 s) delivers it; once, in order.
    wait_until(lambda: "您好，Rasa不在时写的回复。" in bot_texts(stack, merchant), 60, "the kept reply")
    [kept] = [m for m in stack.desk_api("GET", f"/api/escalations/{case['id']}")[1]["transcript"] if m["role"] == "agent"]
    assert kept["delivered"] is True
    assert bot_texts(stack, merchant).count("您好，Rasa不在时写的回复。") == 1


def test_desk_database_down_503_and_nothing_accepted_is_lost(stack, postgres):
    before = stack.desk_api("GET", "/api/escalations")[1]["escalations"]
    status, accepted = stack.desk_api("POST", "/api/escalations", {"sender_id": "faults-direct", "channel": "rest", "summary": "before"})
    assert status == 201

    postgres.halt()
    try:
        status, body = stack.desk_api("POST", "/api/escalations", {"sender_id": "faults-direct-2", "channel": "rest", "summary": "during"})
        assert status == 503 and body == {"error": "database unavailable, try again"}
        status, body = stack.desk_api("GET", "/api/escalations")
        assert status == 503 and set(body) == {"error"}
        assert request("GET", f"{stack.desk_url}/health")[0] == 200  # the desk itself is up
        # A merchant escalates meanwhile: the ticket is given, the case waits in the outbox.
        merchant = "faults-shop-db-down"
        escalated = walk_to_handoff(stack.say, merchant)[-1]
        assert "工单已保存" in escalated
        ticket = re.search(r"PX-[0-9A-Z]{6}", escalated).group(0)
    finally:
        postgres.resume()

    wait_until(lambda: stack.desk_api("GET", f"/api/escalations?ticket={ticket}")[1].get("escalations"), 60, "the queued escalation")
    # Confirmed cases leave the outbox: later retry rounds cannot add a second one.
    import sqlite3

    with sqlite3.connect(stack.directory / "outbox.sqlite") as outbox:
        wait_until(lambda: outbox.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0, 30, "empty outbox")
    found = stack.desk_api("GET", f"/api/escalations?sender_id={merchant}")[1]["escalations"]
    assert [c["ticket"] for c in found] == [ticket]
    # Everything accepted before the outage is still there, unchanged.
    after = {c["id"]: c for c in stack.desk_api("GET", "/api/escalations")[1]["escalations"]}
    for case in [*before, accepted]:
        assert after[case["id"]]["ticket"] == case["ticket"]
        assert after[case["id"]]["sender_id"] == case["sender_id"]
    assert not stack.desk_api("GET", "/api/escalations?sender_id=faults-direct-2")[1]["escalations"]

"""The real stack with Rasa's event broker from endpoints.yml: what is said during a
handoff reaches the desk's case by push, without anyone opening the case; the case
reads in words (button titles, the bot's ticket message). A WeCom session that ended
(the channel's report) gives the conversation back to the bot with a bare resume."""

from __future__ import annotations

import re
import sqlite3
import time

from tests.harness.http import http
from tests.harness.processes import wait_until
from tests.harness.stack import walk_to_handoff


def stored_messages(stack, ticket: str):  # noqa: F811
    """The case's messages straight from the desk's database: no API read that would
    re-read the Rasa tracker."""
    with sqlite3.connect(stack.directory / "desk.db") as db:
        return db.execute(
            "SELECT m.role, m.kind, m.text FROM messages m JOIN escalations e ON e.id = m.escalation_id "
            "WHERE e.ticket = ? ORDER BY m.at, m.id",
            (ticket,),
        ).fetchall()


def test_the_case_learns_by_push_and_reads_in_words(stack):  # noqa: F811
    merchant = "e2e-live-1"
    [escalated] = walk_to_handoff(stack.say, merchant)
    ticket = re.search(r"PX-[0-9A-Z]{6}", escalated).group(0)
    assert stack.say(merchant, "还要等多久") == []
    # Pushed by the broker: nothing here reads the case through the desk.
    wait_until(lambda: ("user", "merchant", "还要等多久") in stored_messages(stack, ticket))
    messages = stored_messages(stack, ticket)
    texts = [text for _, _, text in messages]
    # The bot's own ticket and promise message is part of the case now.
    assert ("bot", "transcript", escalated) in messages
    # Button clicks read as the buttons' titles; no payload reaches the agent.
    assert "❌ 还是报1000" in texts
    assert not [text for text in texts if text.startswith("/")]
    assert texts.count("还要等多久") == 1
    # Opening the case (the reconciliation read of the tracker) adds nothing twice.
    auth = {"Authorization": f"Bearer {stack.desk.token}"}
    [case] = http("GET", f"{stack.desk.url}/api/escalations?ticket={ticket}", headers=auth)["escalations"]
    detail = http("GET", f"{stack.desk.url}/api/escalations/{case['id']}", headers=auth)
    assert [m["text"] for m in detail["transcript"]] == texts


def test_a_wecom_session_that_ended_resumes_the_bot_without_a_word(stack):  # noqa: F811
    merchant = "e2e-kf-ended"
    ticket = re.search(r"PX-[0-9A-Z]{6}", walk_to_handoff(stack.say, merchant)[-1]).group(0)
    assert stack.tracker(merchant)["paused"] is True
    auth = {"Authorization": f"Bearer {stack.desk.token}"}
    [case] = http("GET", f"{stack.desk.url}/api/escalations?ticket={ticket}", headers=auth)["escalations"]
    before = len(stack.tracker(merchant)["events"])

    def session(state: int, report_id: str) -> dict:
        return {
            "kind": "session",
            "report_id": report_id,
            "sender_id": merchant,
            "channel": "wecom_kf",
            "at": time.time(),
            "state": state,
            "servicer_userid": "zhangsan",
        }

    taken = http("POST", f"{stack.desk.url}/api/channel/reports", {"reports": [session(3, "e2e:s3"), session(4, "e2e:s4")]}, headers=auth)
    assert taken == {"accepted": 2, "rejected": [], "taken": 2, "ignored": 0}
    tracker = stack.tracker(merchant)
    added = tracker["events"][before:]
    # Rasa got the resume and nothing to say: no closing text, no rating question.
    assert [e["event"] for e in added] == ["resume", "action"] and added[1]["name"] == "action_listen"
    assert tracker["paused"] is False
    ended = http("GET", f"{stack.desk.url}/api/escalations/{case['id']}", headers=auth)
    assert (ended["status"], ended["resolved_by"], ended["resolution_note"]) == ("resolved", "wecom:zhangsan", "ended in WeCom")
    # The bot has the conversation again.
    assert stack.say(merchant, "pos机报1000咋整")

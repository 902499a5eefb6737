"""The real stack with Rasa's event broker from endpoints.yml: what is said during a
handoff reaches the desk's case by push, without anyone opening the case; the case
reads in words (button titles, the bot's ticket message)."""
from __future__ import annotations

import re
import sqlite3

from tests.test_e2e_handoff import http, platform, stack, wait_until, walk_to_handoff  # noqa: F401


def stored_messages(stack, ticket: str):  # noqa: F811
    """The case's messages straight from the desk's database: no API read that would
    re-read the Rasa tracker."""
    with sqlite3.connect(stack.directory / "desk.db") as db:
        return db.execute(
            "SELECT m.role, m.kind, m.text FROM messages m JOIN escalations e ON e.id = m.escalation_id "
            "WHERE e.ticket = ? ORDER BY m.at, m.id", (ticket,)).fetchall()


def test_the_case_learns_by_push_and_reads_in_words(stack):  # noqa: F811
    merchant = "e2e-live-1"
    escalated = walk_to_handoff(stack, merchant)
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

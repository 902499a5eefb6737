"""The NLU inbox end to end, on the stack ``make run`` starts: what a merchant writes over
Rasa's REST channel reaches the desk through Rasa's event broker (``rasa_server.desk_events``)
with what NLU made of it, and an operator labels it into the reviewed file."""

from __future__ import annotations

import yaml

from tests.harness.processes import wait_until


def inbox_entry(stack, text):
    status, body = stack.desk_api("GET", "/api/nlu/inbox?limit=200")
    assert status == 200, body
    return next((item for item in body["items"] if item["text"] == text), None)


def test_a_misunderstood_message_reaches_the_inbox_and_a_label_the_reviewed_file(stack):
    sender = "e2e-inbox-1"
    stack.say(sender, "1000是什么意思")  # the bot is sure of this one
    assert stack.say(sender, "隔壁奶茶店今天排长队")  # nothing the bot knows: out of scope or unsure
    entry = wait_until(lambda: inbox_entry(stack, "隔壁奶茶店今天排长队"), 30, "the message in the inbox")
    assert set(entry["reasons"]) & {"out_of_scope", "low_confidence", "fallback"}
    # The broker sends in order: the earlier, understood message was filed and left out.
    assert inbox_entry(stack, "1000是什么意思") is None
    status, body = stack.desk_api("POST", f"/api/nlu/inbox/{entry['id']}/label", {"action": "out_of_scope", "version": entry["version"]})
    assert status == 200 and body["status"] == "out_of_scope", body
    reviewed = yaml.safe_load((stack.directory / "reviewed.yml").read_text(encoding="utf-8"))
    assert {"intent": "out_of_scope", "examples": "- 隔壁奶茶店今天排长队\n"} in reviewed["nlu"]

"""Which merchant messages belong to a case: those written while it paused the bot."""

from __future__ import annotations

from support_desk.relay import paused_messages, rasa_events

CASE = {"id": 1, "ticket": "PX-7K2Q9M", "created_at": "2026-01-01T00:00:10+00:00"}


def user(text: str, ts: float) -> dict:
    return {"event": "user", "text": text, "timestamp": ts}


EVENTS = [
    user("转人工", 1767225600.0),
    {"event": "slot", "name": "ticket", "value": "PX-7K2Q9M", "timestamp": 1767225605.0},
    {"event": "pause", "timestamp": 1767225605.0},
    user("还要等多久", 1767225620.0),
    user("刚才又报了一次", 1767225630.0),
    {"event": "resume", "timestamp": 1767225640.0},
    user("1000是什么意思", 1767225650.0),
    # The same ticket asked about later does not start a second span.
    {"event": "slot", "name": "ticket", "value": "PX-7K2Q9M", "timestamp": 1767225660.0},
    user("我的工单怎么样了 PX-7K2Q9M", 1767225661.0),
]


def test_from_the_handoff_to_the_resume_only():
    assert [m["text"] for m in paused_messages(EVENTS, CASE)] == ["还要等多久", "刚才又报了一次"]
    assert paused_messages(EVENTS, CASE)[0]["source_ts"] == 1767225620.0


def test_written_before_the_desk_knew_the_case():
    # Delivered late through the outbox: created_at is after the merchant's messages.
    late = {**CASE, "created_at": "2026-01-01T00:01:00+00:00"}
    assert [m["text"] for m in paused_messages(EVENTS, late)] == ["还要等多久", "刚才又报了一次"]


def test_a_case_made_through_the_api_starts_at_its_creation_time():
    direct = {**CASE, "ticket": "PX-AAAAAA", "created_at": "2026-01-01T00:00:15+00:00"}
    assert [m["text"] for m in paused_messages(EVENTS, direct)] == ["还要等多久", "刚才又报了一次"]


def test_still_paused_takes_everything_after_the_handoff():
    assert [m["text"] for m in paused_messages(EVENTS[:5], CASE)] == ["还要等多久", "刚才又报了一次"]


# Delivery: a retry after a lost answer does not send the agent's reply twice.

from support_desk.relay import RasaRelay  # noqa: E402


class FakeStore:
    def __init__(self, message):
        self.message, self.marked = message, []

    async def undelivered(self, escalation_id=None):
        return [self.message] if not self.marked else []

    async def mark_delivery(self, message_id, error):
        self.marked.append((message_id, error))


class FakeRasa:
    def __init__(self, events):
        self.events, self.appended = events, []

    async def tracker_events(self, sender_id):
        return self.events

    async def append_events(self, sender_id, events):
        self.appended.append(events)


REPLY = {
    "id": 7,
    "escalation_id": 1,
    "sender_id": "shop-1",
    "text": "您好",
    "author": "li",
    "kind": "reply",
    "delivery_error": "Rasa not reachable: TimeoutError",
}


async def test_a_retry_finds_the_reply_that_arrived_and_does_not_send_it_again():
    rasa = FakeRasa([{"event": "bot", "text": "您好", "metadata": {"agent": "li", "desk_message_id": 7}}])
    store = FakeStore(REPLY)
    assert await RasaRelay(store, rasa).deliver_pending() == {}
    assert rasa.appended == [] and store.marked == [(7, None)]


async def test_a_retry_sends_the_reply_that_did_not_arrive_once_with_its_id():
    rasa = FakeRasa([{"event": "bot", "text": "您好", "metadata": {"desk_message_id": 6}}])
    store = FakeStore(REPLY)
    await RasaRelay(store, rasa).deliver_pending()
    assert rasa.appended == [[{"event": "bot", "text": "您好", "metadata": {"agent": "li", "desk_message_id": 7}}]]
    assert store.marked == [(7, None)]


def _message(message_id: int, kind: str, **fields) -> dict:
    return {
        "id": message_id,
        "escalation_id": 1,
        "sender_id": "shop-1",
        "text": f"{kind} text",
        "author": "li",
        "kind": kind,
        "buttons": None,
        **fields,
    }


def test_every_bot_event_the_desk_appends_carries_its_desk_message_id():
    # The channel reports each message's fate by this id (Rasa hands metadata to it).
    for kind in ("reply", "notice", "handback"):
        bots = [e for e in rasa_events(_message(3, kind), None) if e["event"] == "bot"]
        assert bots and all(e["metadata"]["desk_message_id"] == 3 for e in bots)
    closing = rasa_events(_message(4, "closing"), _message(5, "rating", buttons=[{"title": "5", "payload": "/r"}]))
    assert [e["metadata"]["desk_message_id"] for e in closing if e["event"] == "bot"] == [4, 5]


def test_a_session_that_ended_in_wecom_resumes_without_a_word():
    assert rasa_events(_message(6, "resume"), None) == [{"event": "resume"}, {"event": "action", "name": "action_listen"}]

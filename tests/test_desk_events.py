"""Rasa's event broker for the desk, against a real local HTTP server standing in for the desk."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List

import pytest
from aiohttp import web
from rasa.core.brokers.broker import EventBroker
from rasa.utils.endpoints import EndpointConfig

from rasa_server.desk_events import DeskEventBroker
from tests.local_http import serve_locally


class FakeDesk:
    """Records each batch; answers ``status`` (a list is used up one answer per request)."""

    def __init__(self) -> None:
        self.batches: List[List[Dict[str, Any]]] = []
        self.answers: List[int] = []
        self.tokens: List[str] = []
        self.arrived = asyncio.Event()
        app = web.Application()
        app.router.add_post("/api/rasa/events", self.take)
        self.app = app

    async def take(self, request: web.Request) -> web.Response:
        self.tokens.append(request.headers.get("Authorization", ""))
        status = self.answers.pop(0) if self.answers else 200
        if status == 200:
            self.batches.append((await request.json())["events"])
            self.arrived.set()
        return web.json_response({}, status=status)

    @property
    def events(self) -> List[Dict[str, Any]]:
        return [event for batch in self.batches for event in batch]


@pytest.fixture
async def desk():
    fake = FakeDesk()
    runner, url = await serve_locally(fake.app)
    fake.url = url
    yield fake
    await runner.cleanup()


def user(sender: str, text: str, ts: float) -> Dict[str, Any]:
    return {"sender_id": sender, "event": "user", "text": text, "timestamp": ts}


async def until(condition, rounds: int = 400) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("condition not reached")


async def test_rasa_builds_it_from_endpoints_yml(desk):
    config = EndpointConfig(url=desk.url, token="t0k", type="rasa_server.desk_events.DeskEventBroker", batch_size=3)
    broker = await EventBroker.create(config)
    assert isinstance(broker, DeskEventBroker) and broker.batch_size == 3 and broker.is_ready()
    broker.publish(user("m-1", "在吗", 1.0))
    await until(lambda: desk.events)
    assert desk.tokens == ["Bearer t0k"]
    await broker.close()


async def test_only_what_the_desk_reads_is_sent_in_batches_in_order(desk):
    broker = DeskEventBroker(desk.url, "t", batch_size=200)
    broker.publish({"sender_id": "m-1", "event": "action", "name": "action_listen", "timestamp": 1.0})
    broker.publish(
        {
            "sender_id": "m-1",
            "event": "bot",
            "text": "还报1000吗？",
            "timestamp": 2.0,
            "data": {"buttons": [{"title": "❌ 还是报1000", "payload": "/inform_not_fixed"}]},
        }
    )
    broker.publish(user("m-1", "/inform_not_fixed", 3.0))
    broker.publish(user("m-1", '/greet{"language": "zh"}', 3.5))
    broker.publish({"sender_id": "m-1", "event": "bot", "text": "您好", "timestamp": 4.0, "metadata": {"desk_message_id": 9}})
    broker.publish({"sender_id": "m-1", "event": "slot", "name": "ticket", "value": "PX-7K2Q9M", "timestamp": 5.0})
    broker.publish({"sender_id": "m-1", "event": "slot", "name": "language", "value": "zh", "timestamp": 5.0})
    broker.publish({"sender_id": "m-1", "event": "pause", "timestamp": 6.0})
    for number in range(450):
        broker.publish(user("m-2", f"消息{number}", 10.0 + number))
    await until(lambda: len(desk.events) == 454)
    await broker.close()
    assert [(e["event"], e.get("text") or e.get("value")) for e in desk.events[:4]] == [
        ("bot", "还报1000吗？"),
        ("user", "❌ 还是报1000"),
        ("slot", "PX-7K2Q9M"),
        ("pause", None),
    ]
    assert [e["text"] for e in desk.events[4:]] == [f"消息{n}" for n in range(450)]
    assert max(len(batch) for batch in desk.batches) == 200


async def test_a_voice_message_reaches_the_desk_marked_as_voice(desk):
    broker = DeskEventBroker(desk.url, "t")
    broker.publish({**user("m-1", "卡号622202******0006 报1000", 1.0), "metadata": {"voice": True}})
    broker.publish({**user("m-1", "typed", 2.0), "metadata": {"voice": False}})
    await until(lambda: len(desk.events) == 2)
    await broker.close()
    assert [e["text"] for e in desk.events] == ["🎤 卡号622202******0006 报1000", "typed"]


async def test_each_user_message_carries_what_nlu_made_of_it_and_the_clarifying_question_its_name(desk):
    broker = DeskEventBroker(desk.url, "t")
    parse_data = {
        "intent": {"name": "faq", "confidence": 0.41},
        "entities": [{"entity": "language", "value": "zh"}],
        "intent_ranking": [
            {"name": n, "confidence": c} for n, c in [("faq", 0.41), ("ask_how_to_fix", 0.3), ("greet", 0.2), ("deny", 0.09)]
        ],
        "response_selector": {"faq": {"response": {"intent_response_key": "faq/apply_pos", "confidence": 0.8}}},
    }
    broker.publish({**user("m-1", "pos机咋办", 1.0), "parse_data": parse_data})
    clarify = {"buttons": [{"title": "怎么解决", "payload": "/ask_how_to_fix"}]}
    broker.publish(
        {
            "sender_id": "m-1",
            "event": "bot",
            "text": "是哪一个？",
            "timestamp": 2.0,
            "data": clarify,
            "metadata": {"utter_action": "utter_clarify"},
        }
    )
    broker.publish({**user("m-1", "/ask_how_to_fix", 3.0), "parse_data": {"intent": {"name": "ask_how_to_fix", "confidence": 1.0}}})
    broker.publish(user("m-1", "no parse data", 4.0))
    await until(lambda: len(desk.events) == 4)
    await broker.close()
    typed, question, click, bare = desk.events
    assert typed["nlu"] == {
        "intent": "faq",
        "confidence": 0.41,
        "ranking": [
            {"name": "faq", "confidence": 0.41},
            {"name": "ask_how_to_fix", "confidence": 0.3},
            {"name": "greet", "confidence": 0.2},
        ],
        "faq": "faq/apply_pos",
        "language": "zh",
        "clicked": False,
    }
    assert question["utter_action"] == "utter_clarify"
    assert (click["text"], click["nlu"]["intent"], click["nlu"]["clicked"]) == ("怎么解决", "ask_how_to_fix", True)
    assert bare["nlu"]["intent"] is None and bare["nlu"]["ranking"] == []


async def test_a_desk_that_is_down_gets_everything_once_in_order_when_back(desk):
    broker = DeskEventBroker(desk.url, "t", retry_first_seconds=0.01, retry_max_seconds=0.05)
    desk.answers = [503, 503, 502, 503]
    for number in range(5):
        broker.publish(user("m-1", f"第{number}条", float(number + 1)))
        await asyncio.sleep(0.02)
    await until(lambda: len(desk.events) == 5 and not broker.pending)
    await broker.close()
    assert [e["text"] for e in desk.events] == [f"第{n}条" for n in range(5)]
    assert not desk.answers  # all four refusals were met, then the retry got through


async def test_waiting_events_are_bounded_and_the_log_says_what_was_dropped(desk, caplog):
    broker = DeskEventBroker(desk.url, "t", max_pending=5, retry_first_seconds=0.01, retry_max_seconds=0.02)
    desk.answers = [503] * 30
    with caplog.at_level(logging.WARNING, logger="rasa_server.desk_events"):
        for number in range(8):
            broker.publish(user("m-1", f"第{number}条", float(number + 1)))
    assert len(broker.pending) == 5 and broker.dropped == 3
    assert "1 oldest dropped so far" in caplog.text  # said at the first drop
    desk.answers = []
    await until(lambda: not broker.pending)
    await broker.close()
    assert [e["text"] for e in desk.events] == [f"第{n}条" for n in range(3, 8)]


async def test_a_batch_the_desk_refuses_for_good_is_logged_and_not_retried(desk, caplog):
    broker = DeskEventBroker(desk.url, "t", retry_first_seconds=0.01)
    desk.answers = [400]
    with caplog.at_level(logging.ERROR, logger="rasa_server.desk_events"):
        broker.publish(user("m-1", "一", 1.0))
        await until(lambda: not broker.pending)
        broker.publish(user("m-1", "二", 2.0))
        await until(lambda: desk.events)
    await broker.close()
    assert [e["text"] for e in desk.events] == ["二"] and "desk refused 1 events" in caplog.text


async def test_publish_never_waits_for_or_fails_with_the_desk():
    # Nothing listens at this address: publish returns at once and raises nothing.
    broker = DeskEventBroker("http://127.0.0.1:9", "t", retry_first_seconds=0.01)
    for number in range(100):
        broker.publish(user("m-1", str(number), float(number + 1)))
    assert len(broker.pending) == 100
    await asyncio.sleep(0.05)
    await broker.close(flush_seconds=0.05)


async def test_without_a_desk_url_nothing_is_kept():
    broker = DeskEventBroker("", None)
    broker.publish(user("m-1", "在吗", 1.0))
    assert not broker.pending
    await broker.close()


@pytest.mark.parametrize("path", ["endpoints.yml", "deploy/endpoints.yml"])
def test_both_endpoint_files_name_the_broker_with_the_desks_address_from_the_environment(path):
    import yaml

    from tests.harness.processes import ROOT

    broker = yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))["event_broker"]
    assert broker == {"type": "rasa_server.desk_events.DeskEventBroker", "url": "${DESK_URL}", "token": "${DESK_API_TOKEN}"}

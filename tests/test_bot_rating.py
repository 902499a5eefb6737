"""The merchant's rating of the bot (after a fixed terminal) reaches the desk's stats:
``ActionRecordRating`` against the real desk app on 127.0.0.1 (SQLite)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiohttp.test_utils import TestServer
from rasa_sdk.events import SlotSet

from actions import feedback
from actions.feedback import ActionRecordRating
from actions.settings import load_settings
from support_desk.api import STORE
from support_desk.app import create_app
from tests.harness.actions import responses
from tests.harness.desk_app import TOKEN, desk_settings
from tests.harness.actions import BOT_QUESTION


@pytest.fixture
async def desk(tmp_path, monkeypatch):
    app = create_app(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}"))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    settings = replace(
        load_settings(environ={}),
        desk_url=str(server.make_url("")).rstrip("/"),
        desk_api_token=TOKEN,
        outbox_file=tmp_path / "outbox.sqlite",
    )
    monkeypatch.setattr(feedback, "current_settings", lambda: settings)
    yield app[STORE]
    await server.close()


def rated(make_tracker, stars: str):
    return make_tracker(slots={"rating": float(stars)}, intent="rate", text=stars, events=[BOT_QUESTION, {"event": "user", "text": stars}])


async def test_the_rating_reaches_the_stats_once(desk, make_tracker, dispatcher, domain):
    tracker = rated(make_tracker, "4")
    await desk.record_outcome(tracker.sender_id, "resolved", "restart", "zh")
    assert await ActionRecordRating().run(dispatcher, tracker, domain) == [SlotSet("rating", 4.0)]
    stats = await desk.stats()
    assert (stats["bot_rating_average"], stats["bot_ratings"]) == (4.0, 1)
    # Rated again (the desk answers 409): still thanked, the stats keep the first.
    assert await ActionRecordRating().run(dispatcher, rated(make_tracker, "1"), domain) == [SlotSet("rating", 1.0)]
    assert responses(dispatcher) == ["utter_thanks_rating", "utter_thanks_rating"]
    assert (await desk.stats())["bot_rating_average"] == 4.0


async def test_a_desk_that_is_down_does_not_break_the_chat(monkeypatch, make_tracker, dispatcher, domain):
    settings = replace(load_settings(environ={}), desk_url="http://127.0.0.1:9", desk_api_token=TOKEN)
    monkeypatch.setattr(feedback, "current_settings", lambda: settings)
    assert await ActionRecordRating().run(dispatcher, rated(make_tracker, "5"), domain) == [SlotSet("rating", 5.0)]
    assert responses(dispatcher) == ["utter_thanks_rating"]

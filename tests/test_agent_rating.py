"""The merchant rates the agent who resolved the case: the desk contract, against a double.

The double is the desk API as the contract describes it (``GET /api/escalations`` with
``sender_id`` and ``status``, ``POST /api/escalations/{id}/satisfaction``), on 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from rasa_sdk.events import SlotSet

from actions import agent_rating
from actions.agent_rating import ActionRecordAgentRating, agent_rating_asked
from actions.feedback import ActionRecordRating
from actions.settings import load_settings
from tests.harness.actions import BOT_QUESTION, responses
from tests.harness.desk_app import AUTH, TOKEN

AGENT_QUESTION = {
    "event": "bot",
    "text": "请为这次人工服务打分",
    "data": {"buttons": [{"title": f"{n} ⭐", "payload": f'/rate_agent{{"agent_rating": "{n}"}}'} for n in range(5, 0, -1)]},
}


class DeskDouble:
    """Escalations of one merchant; records every satisfaction request."""

    def __init__(self) -> None:
        self.cases: List[Dict[str, Any]] = [
            {"id": 7, "ticket": "PX-OLD111", "sender_id": "merchant-1", "status": "resolved"},
            {"id": 9, "ticket": "PX-NEW999", "sender_id": "merchant-1", "status": "resolved"},
            {"id": 11, "ticket": "PX-OPEN00", "sender_id": "merchant-1", "status": "open"},
        ]
        self.ratings: Dict[int, int] = {}
        self.queries: List[Dict[str, str]] = []
        app = web.Application()
        app.router.add_get("/api/escalations", self._list)
        app.router.add_post("/api/escalations/{id}/satisfaction", self._rate)
        self.server = TestServer(app, host="127.0.0.1")

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == AUTH["Authorization"]

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        self.queries.append(dict(request.query))
        found = [c for c in self.cases if all(c.get(k) == v for k, v in request.query.items())]
        return web.json_response({"escalations": sorted(found, key=lambda c: -c["id"])})

    async def _rate(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        case_id = int(request.match_info["id"])
        rating = (await request.json()).get("rating")
        if not isinstance(rating, int) or not 1 <= rating <= 5:
            return web.json_response({"error": "rating must be 1-5"}, status=400)
        case = next(c for c in self.cases if c["id"] == case_id)
        if case["status"] != "resolved" or case_id in self.ratings:
            return web.json_response({"error": "already rated"}, status=409)
        self.ratings[case_id] = rating
        return web.json_response({**case, "satisfaction": rating})


@pytest.fixture
async def desk(monkeypatch, tmp_path):
    double = DeskDouble()
    await double.server.start_server()
    url = str(double.server.make_url("")).rstrip("/")
    settings = replace(
        load_settings(environ={}), desk_url=url, desk_api_token=TOKEN, outbox_file=tmp_path / "outbox.sqlite", desk_timeout_seconds=2.0
    )
    monkeypatch.setattr(agent_rating, "current_settings", lambda: settings)
    yield double
    await double.server.close()


def clicked(make_tracker, stars: str, language: str = "zh"):
    return make_tracker(
        slots={"agent_rating": float(stars), "language": language},
        intent="rate_agent",
        text=f'/rate_agent{{"agent_rating": "{stars}"}}',
        events=[AGENT_QUESTION, {"event": "user", "text": f"/rate_agent{stars}"}],
    )


async def test_a_click_rates_the_latest_resolved_case(desk, make_tracker, dispatcher, domain):
    events = await ActionRecordAgentRating().run(dispatcher, clicked(make_tracker, "4"), domain)
    assert desk.ratings == {9: 4}
    assert desk.queries == [{"sender_id": "merchant-1", "status": "resolved"}]
    assert responses(dispatcher) == ["utter_thanks_agent_rating"]
    assert events == [SlotSet("agent_rating", 4.0)]


async def test_once_per_case(desk, make_tracker, dispatcher, domain):
    await ActionRecordAgentRating().run(dispatcher, clicked(make_tracker, "5"), domain)
    await ActionRecordAgentRating().run(dispatcher, clicked(make_tracker, "1"), domain)
    assert desk.ratings == {9: 5}
    assert responses(dispatcher) == ["utter_thanks_agent_rating", "utter_agent_rating_already"]


async def test_nothing_resolved_nothing_to_rate(desk, make_tracker, dispatcher, domain):
    desk.cases = [c for c in desk.cases if c["status"] != "resolved"]
    await ActionRecordAgentRating().run(dispatcher, clicked(make_tracker, "5"), domain)
    assert desk.ratings == {} and responses(dispatcher) == ["utter_agent_rating_no_case"]


async def test_a_rating_out_of_range_is_asked_again(desk, make_tracker, dispatcher, domain):
    tracker = make_tracker(slots={"agent_rating": 9.0}, intent="rate_agent", text="9")
    assert await ActionRecordAgentRating().run(dispatcher, tracker, domain) == [SlotSet("agent_rating", None)]
    assert desk.ratings == {} and responses(dispatcher) == ["utter_rating_invalid"]


async def test_a_desk_that_is_down_still_thanks_and_the_rating_stays_in_the_slot(monkeypatch, make_tracker, dispatcher, domain):
    settings = replace(load_settings(environ={}), desk_url="http://127.0.0.1:9", desk_api_token=TOKEN, desk_timeout_seconds=0.5)
    monkeypatch.setattr(agent_rating, "current_settings", lambda: settings)
    events = await ActionRecordAgentRating().run(dispatcher, clicked(make_tracker, "3"), domain)
    assert responses(dispatcher) == ["utter_thanks_agent_rating"]
    assert events == [SlotSet("agent_rating", 3.0)]


async def test_a_typed_score_after_the_agent_question_rates_the_agent(desk, make_tracker, dispatcher, domain):
    tracker = make_tracker(slots={"rating": 5.0}, intent="rate", text="5分", events=[AGENT_QUESTION, {"event": "user", "text": "5分"}])
    events = await ActionRecordRating().run(dispatcher, tracker, domain)
    assert desk.ratings == {9: 5}
    assert events == [SlotSet("rating", None), SlotSet("agent_rating", 5.0)]
    assert responses(dispatcher) == ["utter_thanks_agent_rating"]


async def test_a_typed_score_after_the_bots_question_rates_the_bot(desk, make_tracker, dispatcher, domain):
    tracker = make_tracker(
        slots={"rating": 5.0},
        intent="rate",
        text="5分",
        events=[AGENT_QUESTION, {"event": "user", "text": "谢谢"}, BOT_QUESTION, {"event": "user", "text": "5分"}],
    )
    assert not agent_rating_asked(tracker)
    assert await ActionRecordRating().run(dispatcher, tracker, domain) == [SlotSet("rating", 5.0)]
    assert desk.ratings == {} and responses(dispatcher) == ["utter_thanks_rating"]

"""Clarifying fallback and rating: exact events and responses."""

from __future__ import annotations

import pytest
from rasa_sdk.events import SlotSet

from actions.fallback import ActionClarify
from actions.feedback import ActionRecordRating, parse_rating
from tests.harness.actions import responses

RANKING = [
    {"name": "nlu_fallback", "confidence": 0.5},
    {"name": "faq", "confidence": 0.31},
    {"name": "ask_affects_transactions", "confidence": 0.30},
    {"name": "greet", "confidence": 0.2},
    {"name": "ask_how_to_fix", "confidence": 0.15},
    {"name": "start_diagnostics", "confidence": 0.05},
]


async def test_clarify_offers_the_two_likeliest_topics(make_tracker, dispatcher, domain):
    tracker = make_tracker(intent="nlu_fallback", intent_ranking=RANKING)
    assert await ActionClarify().run(dispatcher, tracker, domain) == []
    [message] = dispatcher.messages
    assert message["response"] == "utter_clarify"
    assert message["buttons"] == [
        {"title": "顾客被扣钱了吗", "payload": "/ask_affects_transactions"},
        {"title": "怎么解决1000", "payload": "/ask_how_to_fix"},
    ]


async def test_clarify_in_english(make_tracker, dispatcher, domain):
    tracker = make_tracker(slots={"language": "en"}, intent_ranking=RANKING)
    await ActionClarify().run(dispatcher, tracker, domain)
    assert [b["title"] for b in dispatcher.messages[0]["buttons"]] == [
        "Was the customer charged?",
        "How to fix 1000",
    ]


async def test_clarify_without_a_known_topic_asks_to_rephrase(make_tracker, dispatcher, domain):
    tracker = make_tracker(intent_ranking=[{"name": "greet", "confidence": 0.4}])
    await ActionClarify().run(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_default"]


@pytest.mark.parametrize(
    "slot, text, expected",
    [
        ("5", "/rate", 5),
        (4.0, "4 stars", 4),
        (None, "给你打三分吧", 3),
        (None, "rating 2", 2),
        (None, "5星", 5),
        ("7", "7", None),
        (None, "10分", None),
        (None, "一般般", None),
        (None, "", None),
        (None, "三四分吧", 4),
        (None, "三分还是四分", None),
        (None, "五", 5),
        (None, "一直报错", None),
    ],
)
def test_parse_rating(slot, text, expected):
    assert parse_rating(slot, text) == expected


async def test_valid_rating_is_kept(make_tracker, dispatcher, domain):
    tracker = make_tracker(slots={"rating": "4"}, text="4", intent="rate")
    events = await ActionRecordRating().run(dispatcher, tracker, domain)
    assert events == [SlotSet("rating", 4.0)]
    assert responses(dispatcher) == ["utter_thanks_rating"]


async def test_invalid_rating_is_asked_again(make_tracker, dispatcher, domain):
    tracker = make_tracker(slots={"rating": None}, text="99分", intent="rate")
    events = await ActionRecordRating().run(dispatcher, tracker, domain)
    assert events == [SlotSet("rating", None)]
    assert responses(dispatcher) == ["utter_rating_invalid"]

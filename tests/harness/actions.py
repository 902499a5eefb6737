"""Helpers for the custom actions' unit tests."""

from __future__ import annotations

from typing import List

from rasa_sdk.executor import CollectingDispatcher

# The bot's own rating question (the last bot event before a merchant's typed score).
BOT_QUESTION = {
    "event": "bot",
    "text": "请为这次排查打分",
    "data": {"buttons": [{"title": "⭐" * 5, "payload": '/rate{"rating": "5"}'}]},
}


def responses(dispatcher: CollectingDispatcher) -> List[str]:
    """Names of the responses a dispatcher collected, in order."""
    return [message["response"] for message in dispatcher.messages]

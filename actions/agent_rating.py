"""The merchant's 1–5 for the person who solved the case.

When an agent resolves a case the desk resumes the conversation, sends the closing
message and asks for a rating with buttons ``/rate_agent{"agent_rating": "N"}``. The
click (or a typed "5分" right after that question, via ``actions/feedback.py``) lands
here: the rating goes to the merchant's latest resolved case; the desk keeps one per
case and answers 409 for a second one.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.desk_client import DeskClient, DeskRejected, DeskUnavailable
from actions.rating_text import parse_rating
from actions.settings import current_settings

logger = logging.getLogger(__name__)

PAYLOAD_PREFIX = "/rate_agent"


def agent_rating_asked(tracker: Tracker) -> bool:
    """The last bot message before the merchant's latest one asked to rate the agent."""
    seen_user = False
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            if seen_user:
                return False
            seen_user = True
        elif event.get("event") == "bot" and seen_user:
            buttons = (event.get("data") or {}).get("buttons") or []
            return any(str(button.get("payload", "")).startswith(PAYLOAD_PREFIX) for button in buttons)
    return False


async def send_agent_rating(dispatcher: CollectingDispatcher, tracker: Tracker, slot_value: Any) -> List[EventType]:
    """Rate the merchant's latest resolved case and tell the merchant how it went."""
    rating = parse_rating(slot_value, tracker.latest_message.get("text"))
    if rating is None:
        dispatcher.utter_message(response="utter_rating_invalid")
        return [SlotSet("agent_rating", None)]
    response = await _rate_latest_case(tracker.sender_id, rating)
    dispatcher.utter_message(response=response)
    return [SlotSet("agent_rating", float(rating))]


async def _rate_latest_case(sender_id: Text, rating: int) -> str:
    """The response to send once the desk has (or has not) taken the rating."""
    try:
        client = DeskClient(current_settings())
        cases = await client.find_escalations(sender_id=sender_id, status="resolved")
        case: Optional[Dict[str, Any]] = cases[0] if cases else None
        if case is None:
            return "utter_agent_rating_no_case"
        await client.rate_escalation(case["id"], rating)
    except DeskRejected as error:
        if error.status == 409:
            return "utter_agent_rating_already"
        logger.error("desk refused the agent rating %s for %s: %s", rating, sender_id, error)
    except DeskUnavailable as error:
        # The rating stays in the conversation's `agent_rating` slot; the outbox only
        # carries escalations.
        logger.warning("agent rating %s for %s not delivered: %s", rating, sender_id, error)
    return "utter_thanks_agent_rating"


class ActionRecordAgentRating(Action):
    """Sends the merchant's rating of the agent to the desk and thanks the merchant."""

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_record_agent_rating"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """Validate the rating, rate the latest resolved case, thank the merchant."""
        return await send_agent_rating(dispatcher, tracker, tracker.get_slot("agent_rating"))

"""The merchant's 1–5 rating after a fixed terminal (or, typed, for the agent)."""

from __future__ import annotations

import logging
from typing import List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.agent_rating import agent_rating_asked, send_agent_rating
from actions.desk_client import DeskClient, DeskRejected, DeskUnavailable
from actions.rating_text import parse_rating
from actions.settings import current_settings

logger = logging.getLogger(__name__)


class ActionRecordRating(Action):
    """Keeps a valid rating in the ``rating`` slot, reports it to the desk and thanks the merchant.

    A typed rating ("5分") right after the desk asked to rate the agent is the agent's:
    it goes to ``actions/agent_rating.py``.
    """

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_record_rating"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """Validate the rating; an invalid one is asked for again."""
        if agent_rating_asked(tracker):
            # The number was meant for the agent, not for the bot's checks.
            events = await send_agent_rating(dispatcher, tracker, tracker.get_slot("rating"))
            return [SlotSet("rating", None), *events]
        rating = parse_rating(tracker.get_slot("rating"), tracker.latest_message.get("text"))
        if rating is None:
            dispatcher.utter_message(response="utter_rating_invalid")
            return [SlotSet("rating", None)]
        await report_bot_rating(tracker.sender_id, rating)
        dispatcher.utter_message(response="utter_thanks_rating")
        return [SlotSet("rating", float(rating))]


async def report_bot_rating(sender_id: str, rating: int) -> None:
    """Tell the desk (its stats page) how the merchant rated the bot's help; a desk that
    is down or refuses (already rated) never keeps the merchant waiting past 1 s."""
    try:
        await DeskClient(current_settings(), timeout=1.0).rate_bot(sender_id, rating)
    except (DeskUnavailable, DeskRejected) as error:
        # The rating also stays in the conversation's ``rating`` slot.
        logger.warning("bot rating not reported to the desk: %s", error)

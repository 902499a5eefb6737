"""What the bot does when it is not sure what the merchant meant."""

from __future__ import annotations

from typing import List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.language import language_of, pick_text
from actions.settings import current_settings, load_labels


class ActionClarify(Action):
    """Offers the two likeliest topics as buttons after a low-confidence message.

    Topics are the intents with a label in ``data/knowledge/labels.yml``; when the
    ranking holds none of them the generic "please rephrase" answer is sent.
    """

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_clarify"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """Send the clarifying question with up to two topic buttons."""
        topics = load_labels(current_settings().labels_file)["topics"]
        ranking = tracker.latest_message.get("intent_ranking") or []
        likely = [item["name"] for item in ranking if item.get("name") in topics][:2]
        if not likely:
            dispatcher.utter_message(response="utter_default")
            return []
        language = language_of(tracker)
        dispatcher.utter_message(
            response="utter_clarify",
            buttons=[{"title": pick_text(topics[intent], language), "payload": f"/{intent}"} for intent in likely],
        )
        return []

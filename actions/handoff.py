"""Hand the merchant over to support.

Until the support desk exists this tells the merchant how to reach support and records
that the case was escalated; the desk issue replaces it with a real handoff.
"""
from __future__ import annotations

from typing import List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict


class ActionHandoff(Action):
    """Tells the merchant how to reach a person and records the escalation."""

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        """Send the contact details; mark the diagnostics outcome as escalated."""
        dispatcher.utter_message(response="utter_handoff_unavailable")
        dispatcher.utter_message(response="utter_contact_support")
        return [SlotSet("diagnostics_outcome", "escalated")]

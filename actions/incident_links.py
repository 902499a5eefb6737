"""Merchants joining an incident's case instead of opening one case each.

Two ways in, both ``POST /api/incidents/{id}/merchants`` on the desk:

* ``action_subscribe_incident`` — "tell me when it is back" (``subscribed: true``);
* ``link_for_person`` — called by ``action_escalate``: a merchant covered by the incident
  who still wants a person is linked to the incident case (``wants_person: true``) and is
  not escalated, unless their problem is a different one: they said so
  (``incident_not_mine``), the network step found the shop's own network down
  (``shop_offline``), or the incident no longer covers them now that the checks told more
  (a terminal model outside the scope). The desk messages every linked merchant
  when the incident closes.

A desk that refuses (404: the incident is over) or is away gives the normal path: the
merchant is offered the checks, or escalated as always. Never silence.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.desk_client import DeskClient, DeskRejected, DeskUnavailable
from actions.incidents import covering_incident
from actions.language import language_of
from actions.merchant import merchant_number, merchant_scope, terminal_reference
from actions.settings import current_settings
from actions.status_source import Incident

logger = logging.getLogger(__name__)


def link_payload(tracker: Tracker, wants_person: bool, subscribed: bool) -> Dict[str, Any]:
    """What the desk keeps about a merchant of the incident case (None fields left out)."""
    merchant = merchant_scope(tracker)
    payload: Dict[str, Any] = {
        "sender_id": tracker.sender_id,
        "channel": merchant["channel"] or "unknown",
        "language": language_of(tracker),
        "merchant_id": merchant_number(tracker),
        "terminal_serial": terminal_reference(tracker),
        "terminal_model": merchant["terminal_model"],
        "region": merchant["region"],
        "contact": tracker.get_slot("contact"),
        "summary": tracker.get_slot("problem_summary"),
        "wants_person": wants_person,
        "subscribed": subscribed,
    }
    return {key: value for key, value in payload.items() if value is not None}


async def link(tracker: Tracker, incident: Incident, wants_person: bool, subscribed: bool) -> Optional[Dict[str, Any]]:
    """Link the merchant to the incident; the desk's answer, None when it did not take it."""
    if incident.id is None:  # an upstream status page's outage has no case to join
        return None
    try:
        return await DeskClient(current_settings()).link_incident(incident.id, link_payload(tracker, wants_person, subscribed))
    except (DeskUnavailable, DeskRejected) as error:
        logger.warning("merchant not linked to incident %s: %s", incident.id, error)
        return None


async def link_for_person(tracker: Tracker) -> Optional[Dict[str, Any]]:
    """Link a merchant who wants a person to the incident covering them, if one does.

    None means: escalate as usual (no incident, the merchant's problem is different, or
    the desk did not take the link)."""
    if tracker.get_slot("incident_not_mine") or tracker.get_slot("shop_offline"):
        return None
    incident = await covering_incident(tracker)
    if incident is None:
        return None
    return await link(tracker, incident, wants_person=True, subscribed=False)


class ActionSubscribeIncident(Action):
    """ "Tell me when it is back": the desk messages the merchant when the incident closes."""

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_subscribe_incident"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """Subscribe the merchant to the incident covering them, or say why not."""
        incident = await covering_incident(tracker)
        if incident is None:
            dispatcher.utter_message(response="utter_incident_none")
            return [SlotSet("incident_id", None)]
        linked = await link(tracker, incident, wants_person=False, subscribed=True)
        if linked is None:
            dispatcher.utter_message(response="utter_incident_subscribe_failed")
            return [SlotSet("incident_id", incident.id)]
        ticket = linked.get("ticket") or incident.ticket or ""
        dispatcher.utter_message(response="utter_incident_subscribed", ticket=ticket)
        return [SlotSet("incident_id", incident.id), SlotSet("incident_ticket", ticket)]

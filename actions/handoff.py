"""Handing the conversation to a person, and answering "where is my ticket?".

``handoff_form`` collects only what support is missing (merchant number / terminal
number / SN, a phone number, a one-line description); ``action_escalate`` creates the
escalation with the diagnostics results and the transcript through the durable outbox,
tells the merchant the ticket number and when to expect an answer, and pauses the bot.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ConversationPaused, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.desk_client import DeskClient, DeskRejected, DeskUnavailable
from actions.diagnostics import STEP_SLOTS
from actions.form_slots import FormSlotsFromDomainFiles
from actions.incident_links import link_for_person
from actions.clock import local_time, reply_clock
from actions.language import language_of
from actions.merchant import merchant_number, scene_merchant_id, terminal_reference
from actions.outbox import ensure_retrying, shared_outbox
from actions.patterns import find
from actions.settings import current_settings
from common.hours import expected_reply_by
from common.privacy import mask_card_numbers
from common.tickets import INCIDENT_TICKET_PREFIX, new_ticket
from common.transcript_text import readable_messages

UNKNOWN = "unknown"
STATUS_RESPONSES = {
    "open": "utter_ticket_status_open",
    "claimed": "utter_ticket_status_claimed",
    "resolved": "utter_ticket_status_resolved",
}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")


class ValidateHandoffForm(FormSlotsFromDomainFiles):
    """Validates the handoff details; asks only for what is not known yet."""

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "validate_handoff_form"

    async def required_slots(
        self,
        domain_slots: List[Text],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> List[Text]:
        """Skip the merchant reference when a number or SN came up earlier, and the
        description when the merchant was told of an incident covering them (the
        incident is the description; "my problem is different" asks for it again)."""
        known = any(tracker.get_slot(s) for s in ("merchant_id", "terminal_id", "terminal_serial"))
        known = known or scene_merchant_id(tracker) is not None
        skip = {"merchant_ref"} if known else set()
        elsewhere = tracker.get_slot("incident_not_mine") or tracker.get_slot("shop_offline")
        if tracker.get_slot("incident_id") is not None and not elsewhere:
            skip.add("problem_summary")
        return [slot for slot in domain_slots if slot not in skip]

    def validate_merchant_ref(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        """Find a merchant number, terminal number or SN in what the merchant typed."""
        if value == UNKNOWN:
            return {"merchant_ref": UNKNOWN}
        text = value if isinstance(value, str) else ""
        found = {
            "merchant_id": find("merchant_id", text),
            "terminal_id": find("terminal_id", text),
            "terminal_serial": find("serial_number", text),
        }
        if not any(found.values()):
            dispatcher.utter_message(response="utter_merchant_ref_invalid")
            return {"merchant_ref": None}
        return {"merchant_ref": text[:100], **{k: v for k, v in found.items() if v}}

    def validate_contact(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        """A phone number (7–15 digits, spaces and dashes allowed) or an e-mail address."""
        text = value.strip() if isinstance(value, str) else ""
        digits = re.sub(r"[\s\-()+]", "", text)
        email = _EMAIL.search(text)
        if email:
            return {"contact": email.group(0)}
        phone = re.search(r"\d{7,15}", digits)
        if phone and len(text) <= 40:
            return {"contact": text}
        dispatcher.utter_message(response="utter_contact_invalid")
        return {"contact": None}

    def validate_problem_summary(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """A short description (2–300 characters), card numbers masked."""
        text = mask_card_numbers(value.strip()) if isinstance(value, str) else ""
        if not 2 <= len(text) <= 300:
            dispatcher.utter_message(response="utter_summary_invalid")
            return {"problem_summary": None}
        return {"problem_summary": text}


def diagnostics_results(tracker: Tracker) -> List[Dict[str, str]]:
    """The checks the merchant went through and how each ended."""
    results = []
    for step, slot in STEP_SLOTS.items():
        value = tracker.get_slot(slot)
        if value is not None:
            results.append({"step": step, "outcome": "fixed" if value else "not_fixed"})
        elif step == "software" and tracker.get_slot("software_status") == "latest":
            # Already on the latest version: the update step could not help.
            results.append({"step": step, "outcome": "already_latest"})
    return results


def transcript(tracker: Tracker) -> List[Dict[str, Any]]:
    """User and bot messages of the conversation so far, in words (button clicks as the
    buttons' titles, the widget's opening payload left out; card numbers masked)."""
    lines = []
    for event, words in readable_messages(tracker.events):
        stamp = float(event.get("timestamp") or 0)
        lines.append(
            {
                "role": event["event"],
                "text": mask_card_numbers(words)[:4000],
                "at": datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat(),
                **({"source_ts": stamp} if event["event"] == "user" else {}),
            }
        )
    return lines[-500:]


def local_reply_by() -> str:
    """When an answer can be expected, computed here when the desk did not answer."""
    clock = reply_clock()
    when = expected_reply_by(datetime.now(timezone.utc), clock.hours, clock.first_reply_minutes)
    return when.isoformat()


class ActionEscalate(Action):
    """Creates the escalation (via the outbox), gives the ticket, pauses the bot."""

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_escalate"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """Send the escalation to the desk; a desk that is down gets it later.

        A merchant covered by an active incident joins its case instead (no escalation,
        no pause: the desk messages them when it is over)."""
        linked = await link_for_person(tracker)
        if linked is not None:
            return incident_linked(dispatcher, tracker, linked)
        settings = current_settings()
        steps = diagnostics_results(tracker)
        payload = {
            "ticket": new_ticket(),
            "sender_id": tracker.sender_id,
            "channel": tracker.get_latest_input_channel() or "unknown",
            "language": language_of(tracker),
            # Every check done and none helped: the merchant cannot take cards at all.
            "priority": "high" if tracker.get_slot("diagnostics_outcome") == "unresolved" else "normal",
            "merchant_id": merchant_number(tracker),
            "terminal_serial": terminal_reference(tracker),
            # The code the merchant named last (another code than 1000 is recorded as such).
            "error_code": tracker.get_slot("error_code") or "1000",
            "contact": tracker.get_slot("contact"),
            "summary": tracker.get_slot("problem_summary"),
            "diagnostics": steps,
            "transcript": transcript(tracker),
        }
        outbox = shared_outbox(settings.outbox_file)
        outbox.put(payload)
        delivered: Dict[str, Dict[str, Any]] = {}
        try:
            client = DeskClient(settings)
            delivered = await outbox.flush(client)
            ensure_retrying(outbox, client, settings.outbox_retry_seconds)
        except (DeskUnavailable, DeskRejected):
            pass
        ticket = payload["ticket"]
        if ticket in delivered:
            reply_by = delivered[ticket].get("expected_reply_by") or local_reply_by()
            response = "utter_escalated"
        else:
            reply_by, response = local_reply_by(), "utter_escalated_queued"
        dispatcher.utter_message(response=response, ticket=ticket, reply_by=local_time(reply_by))
        if tracker.get_latest_input_channel() == "wecom_kf":
            # The 微信客服 channel's cue (channels/wecom_kf.py): with ``handoff: wecom`` it moves
            # the session to a WeCom agent or the pool. No other channel is sent this.
            dispatcher.utter_message(json_message={"wecom_kf": "handoff"})
        return [
            SlotSet("ticket", ticket),
            SlotSet("diagnostics_outcome", "escalated"),
            SlotSet("needs_person", False),
            ConversationPaused(),
        ]


def incident_linked(dispatcher: CollectingDispatcher, tracker: Tracker, linked: Dict[str, Any]) -> List[EventType]:
    """Tell the merchant they are on the incident's case and will hear when it is over."""
    ticket = linked.get("ticket") or tracker.get_slot("incident_ticket") or ""
    dispatcher.utter_message(response="utter_incident_linked", ticket=ticket)
    return [
        SlotSet("incident_ticket", ticket),
        SlotSet("diagnostics_outcome", "incident_linked"),
        SlotSet("needs_person", False),
    ]


class ActionTicketStatus(Action):
    """Answers from the desk, by ticket number or for this conversation.

    A merchant linked to an outage holds its shared case (``INC-…``, the ``incident_ticket``
    slot): while it is open they hear that the outage is not over and that they will be told
    here, not that an agent is about to answer them."""

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_ticket_status"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """Look the ticket up and say where it stands."""
        settings = current_settings()
        ticket = next(tracker.get_latest_entity_values("ticket"), None) or tracker.get_slot("ticket") or tracker.get_slot("incident_ticket")
        queued = [
            p
            for p in shared_outbox(settings.outbox_file).pending()
            if p["ticket"] == ticket or (not ticket and p["sender_id"] == tracker.sender_id)
        ]
        try:
            found = await DeskClient(settings).find_escalations(
                ticket=ticket.upper() if ticket else None,
                sender_id=None if ticket else tracker.sender_id,
            )
        except (DeskUnavailable, DeskRejected):
            found = None
        if not found and queued:
            dispatcher.utter_message(
                response="utter_ticket_status_open",
                ticket=queued[-1]["ticket"],
                reply_by=local_time(local_reply_by()),
            )
            return []
        if found is None:
            dispatcher.utter_message(response="utter_ticket_unchecked")
            return []
        if not found:
            dispatcher.utter_message(response="utter_ticket_not_found")
            return []
        case = found[0]
        if case["ticket"].startswith(INCIDENT_TICKET_PREFIX) and case["status"] != "resolved":
            dispatcher.utter_message(response="utter_ticket_status_incident", ticket=case["ticket"])
            return [SlotSet("incident_ticket", case["ticket"])]
        dispatcher.utter_message(
            response=STATUS_RESPONSES[case["status"]],
            ticket=case["ticket"],
            reply_by=local_time(case["expected_reply_by"]) if case.get("expected_reply_by") else "",
            note=case.get("resolution_note") or "",
        )
        return [SlotSet("ticket", case["ticket"])]

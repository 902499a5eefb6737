"""The guided diagnostics: network → restart → server status → software version.

``diagnostics_form`` (domain/core.yml) lists every slot the checks may need. The
validation action below ends the form early as soon as a step fixed the terminal, or
when the remaining steps cannot help (a known outage, software already current), and
then asks the next question itself when it needs the model's instructions from the
knowledge data: one action-server call per form turn, not a validation call plus an
``action_ask_*`` call. The server-status question stays an action of its own
(``action_ask_server_ok``, see there). ``action_finish_diagnostics`` records the outcome
and closes the case.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.forms import REQUESTED_SLOT
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.form_slots import FormSlotsFromDomainFiles
from actions.desk_client import DeskClient, DeskRejected, DeskUnavailable
from actions.knowledge import (
    UNKNOWN,
    TerminalModel,
    format_version,
    load_knowledge,
    parse_version,
)
from actions.language import language_of, pick_text
from actions.settings import current_settings, load_labels
from actions.incident_reports import send_report
from actions.incidents import EVERYWHERE, bot_scope, say_incident
from actions.merchant import merchant_scope
from actions.regions import load_regions
from actions.status_source import Incident, StatusSource
from common.incident_scope import matches

logger = logging.getLogger(__name__)

# Step name → the slot that holds "does the terminal work now?" after that step.
STEP_SLOTS = {
    "network": "network_ok",
    "restart": "restart_ok",
    "server": "server_ok",
    "software": "software_ok",
}

# Star buttons carry no words, so they need no translation.
RATING_BUTTONS = [{"title": "⭐" * stars, "payload": f'/rate{{"rating": "{stars}"}}'} for stars in range(5, 0, -1)]


def fixed_step(tracker: Tracker) -> Optional[str]:
    """The first step after which the merchant said the terminal works, if any."""
    return next(
        (step for step, slot in STEP_SLOTS.items() if tracker.get_slot(slot) is True),
        None,
    )


def stopped_by_incident(tracker: Tracker) -> bool:
    """A known outage explains the error and retrying did not help yet."""
    return tracker.get_slot("server_status") == "incident" and tracker.get_slot("server_ok") is False


class ValidateDiagnosticsForm(FormSlotsFromDomainFiles):
    """Validates the diagnostics answers, decides which steps are still needed, asks.

    Rasa asks for a slot with ``action_ask_<slot>`` or ``utter_ask_<slot>`` when the
    domain has one, and otherwise leaves the question to the validation action. The
    questions in ``QUESTIONS`` need the knowledge data, so they have neither: this action
    asks them right after validating, with the slots as they are now. They only send
    messages: on a turn where the merchant answered something else (an FAQ question),
    Rasa drops this action's answer and lets the other question be handled — as long as
    the answer sets no slot besides ``requested_slot``.
    """

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "validate_diagnostics_form"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """Validate the answer, then ask the next question if it is one of ``QUESTIONS``."""
        events = await super().run(dispatcher, tracker, domain)
        # super().run applied the validated slots to ``tracker`` and named the next slot last.
        next_slot = events[-1]["value"]
        if next_slot in QUESTIONS:
            QUESTIONS[next_slot](dispatcher, tracker)
        return events

    async def next_requested_slot(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> EventType:
        """Always name the next slot (rasa_sdk leaves it to Rasa when no step is cut)."""
        required = await self.required_slots(self.domain_slots(domain), dispatcher, tracker, domain)
        missing = (slot for slot in required if tracker.slots.get(slot) is None)
        return SlotSet(REQUESTED_SLOT, next(missing, None))

    async def required_slots(
        self,
        domain_slots: List[Text],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> List[Text]:
        """The domain's slots up to the point where the checks can stop."""
        required: List[Text] = []
        step = fixed_step(tracker)
        for slot in domain_slots:
            required.append(slot)
            if step and slot == STEP_SLOTS[step]:
                break
            if slot == "server_ok" and stopped_by_incident(tracker):
                break
            if slot == "software_version" and tracker.get_slot("software_status") == "latest":
                break
        return required

    def _validate_answer(self, slot: Text, value: Any) -> Dict[Text, Any]:
        # Only a real yes/no counts; anything else asks the question again.
        return {slot: value if isinstance(value, bool) else None}

    def validate_network_ok(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        """Accept a yes/no answer to the network step."""
        return self._validate_answer("network_ok", value)

    def validate_restart_ok(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        """Accept a yes/no answer to the restart step."""
        return self._validate_answer("restart_ok", value)

    def validate_server_ok(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        """Accept a yes/no answer to the server-status step; a "still broken" is evidence
        for the desk's proposed incidents."""
        if value is False:
            send_report(tracker, "server_status_failed")
        return self._validate_answer("server_ok", value)

    def validate_software_ok(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        """Accept a yes/no answer to the software step."""
        return self._validate_answer("software_ok", value)

    def validate_terminal_model(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """Map a model mention to its knowledge key; anything unlisted is ``unknown``."""
        knowledge = load_knowledge(current_settings().knowledge_file)
        key = knowledge.match_model(value) if isinstance(value, str) else None
        return {"terminal_model": key or UNKNOWN}

    def validate_software_version(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """Normalise the version and compare it with the latest for the model."""
        if value == UNKNOWN:
            return {"software_version": UNKNOWN, "software_status": UNKNOWN}
        version = parse_version(value) if isinstance(value, str) else None
        if version is None:
            dispatcher.utter_message(response="utter_version_unreadable")
            return {"software_version": None}
        text = format_version(version)
        knowledge = load_knowledge(current_settings().knowledge_file)
        status = knowledge.version_status(tracker.get_slot("terminal_model"), text)
        if status == "latest":
            dispatcher.utter_message(response="utter_software_latest", version=text)
        return {"software_version": text, "software_status": status}


def ask_terminal_model(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    """Ask for the terminal model with one button per model in the knowledge data."""
    settings = current_settings()
    knowledge = load_knowledge(settings.knowledge_file)
    buttons = [
        {
            "title": knowledge.model(key).name,
            "payload": f'/inform{{"terminal_model": "{key}"}}',
        }
        for key in knowledge.model_keys
    ]
    buttons.append(
        {
            "title": pick_text(load_labels(settings.labels_file)["unknown_model"], language_of(tracker)),
            "payload": "/dont_know",
        }
    )
    dispatcher.utter_message(response="utter_question_terminal_model", buttons=buttons)


def merchant_model(tracker: Tracker) -> TerminalModel:
    """The merchant's model entry in the knowledge data (the generic one when unknown)."""
    return load_knowledge(current_settings().knowledge_file).model(tracker.get_slot("terminal_model"))


def ask_restart_ok(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    """Give the restart steps for the merchant's model, then ask if it works now."""
    model = merchant_model(tracker)
    dispatcher.utter_message(
        response="utter_question_restart_ok",
        model_name=f" ({model.name})" if model.name else "",
        restart_steps=pick_text(model.restart, language_of(tracker)),
    )


def ask_software_version(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    """Ask for the software version, saying where the merchant's model shows it."""
    dispatcher.utter_message(
        response="utter_question_software_version",
        version_location=pick_text(merchant_model(tracker).version_location, language_of(tracker)),
    )


def ask_software_ok(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    """Tell how to update (knowing or not whether the version is old), then ask."""
    model = merchant_model(tracker)
    update_steps = pick_text(model.update, language_of(tracker))
    if tracker.get_slot("software_status") == "outdated":
        dispatcher.utter_message(
            response="utter_question_software_ok_outdated",
            version=tracker.get_slot("software_version"),
            latest=model.latest_version,
            update_steps=update_steps,
        )
    else:
        dispatcher.utter_message(response="utter_question_software_ok_unknown", update_steps=update_steps)


# Slot → the question the validator asks for it; a question only sends messages (see
# ValidateDiagnosticsForm). Not here: ``network_ok`` (the plain ``utter_ask_network_ok``
# Rasa sends itself) and ``server_ok`` (``ActionAskServerOk``).
QUESTIONS: Dict[str, Callable[[CollectingDispatcher, Tracker], None]] = {
    "terminal_model": ask_terminal_model,
    "restart_ok": ask_restart_ok,
    "software_version": ask_software_version,
    "software_ok": ask_software_ok,
}


class ActionAskServerOk(Action):
    """Checks the status sources for a known outage and tells the merchant the result.

    The result is kept in ``server_status`` (``incident`` / ``ok`` / ``unchecked``):
    when no source answered the bot says it could not check, never that all is fine.
    Not one of the validator's ``QUESTIONS``: Rasa takes a validation answer that sets a
    slot as an answer to the form, so the validator asking this on a turn where the
    merchant asked something else would swallow that question.
    """

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_ask_server_ok"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """Ask the status sources, then ask whether the terminal works now."""
        report = await StatusSource(current_settings()).check()
        incident = relevant_incident(report.incidents, merchant_scope(tracker))
        if incident:
            message = outage_text(incident, language_of(tracker))
            say_incident(
                dispatcher,
                ("utter_question_server_ok_incident", "utter_question_server_ok_incident_open"),
                message,
                incident.expected_end,
            )
            return [SlotSet("server_status", "incident"), SlotSet("incident_message", message)]
        if report.answered:
            dispatcher.utter_message(response="utter_question_server_ok_clear")
            return [SlotSet("server_status", "ok")]
        dispatcher.utter_message(response="utter_question_server_ok_unchecked")
        return [SlotSet("server_status", "unchecked")]


def relevant_incident(incidents: List[Incident], merchant: Dict[str, Optional[str]]) -> Optional[Incident]:
    """The outage to name at the server step: one covering the merchant, else one that
    may (a dimension unknown), never one whose scope leaves the merchant out."""
    maybe = None
    for incident in incidents:
        scope = bot_scope(incident)
        verdict = matches(scope, merchant) if scope is not None else None
        if verdict is True:
            return incident
        if verdict is None and maybe is None:
            maybe = incident
    return maybe


def outage_text(incident: Incident, language: str) -> str:
    """The outage's text, prefixed with the areas it affects when it names some (the
    merchant can tell whether their shop is in them)."""
    message = pick_text(incident.message, language)
    if incident.scope is None:
        if incident.region and incident.region.lower() not in EVERYWHERE:
            return f"【{incident.region}】{message}"
        return message
    regions = [str(code) for code in incident.scope.get("regions") or []]
    if not regions:
        return message
    table = load_regions()
    return f"【{'、'.join(table.name(code, language) for code in regions)}】{message}"


class ActionFinishDiagnostics(Action):
    """Records how the checks ended and closes them for the merchant.

    * fixed at a step → which step, the prevention tips, a 1–5 rating request;
    * a known outage → wait for it to end;
    * nothing helped → the case needs a person: the handoff form follows.
    """

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_finish_diagnostics"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """Send the closing messages and set ``diagnostics_outcome`` / ``fixed_step``."""
        step = fixed_step(tracker)
        outcome = "resolved" if step else "known_incident" if stopped_by_incident(tracker) else "unresolved"
        await report_outcome(tracker, outcome, step)
        if step:
            labels = load_labels(current_settings().labels_file)["steps"]
            dispatcher.utter_message(
                response="utter_diagnostics_resolved",
                step=pick_text(labels[step], language_of(tracker)),
            )
            dispatcher.utter_message(response="utter_prevention")
            dispatcher.utter_message(response="utter_ask_rating", buttons=RATING_BUTTONS)
            return [
                SlotSet("diagnostics_outcome", "resolved"),
                SlotSet("fixed_step", step),
                SlotSet("needs_person", False),
            ]
        if stopped_by_incident(tracker):
            dispatcher.utter_message(
                response="utter_incident_wait",
                incident=tracker.get_slot("incident_message") or "",
            )
            return [SlotSet("diagnostics_outcome", "known_incident"), SlotSet("needs_person", False)]
        dispatcher.utter_message(response="utter_diagnostics_unresolved")
        # Nothing helped: a rule goes straight on to collecting what support needs.
        return [SlotSet("diagnostics_outcome", "unresolved"), SlotSet("needs_person", True)]


async def report_outcome(tracker: Tracker, outcome: str, step: Optional[str]) -> None:
    """Tell the desk how the checks ended (its stats); never delays the merchant long."""
    try:
        await DeskClient(current_settings(), timeout=1.0).record_outcome(
            {
                "sender_id": tracker.sender_id,
                "outcome": outcome,
                "fixed_step": step,
                "language": language_of(tracker),
            }
        )
    except (DeskUnavailable, DeskRejected) as error:
        # The outcome also stays in the conversation's slots in the tracker store.
        logger.warning("outcome not reported to the desk: %s", error)

"""Known incidents, told before any check: which ones cover this merchant, and the telling.

``action_check_incident`` runs at the merchant's first report of error 1000 (``ask_how_to_fix``,
or "still 1000" outside the checks: data/rules/answers.yml) and again when the checks start
(right after ``action_reset_checks``, data/rules/diagnostics.yml). It asks the desk's
incident board for the active incidents and matches each one's scope against what the bot
knows of the merchant (``actions/merchant.py``; common/incident_scope.py decides). Then, in
the ``incident_match`` slot the rules branch on:

* ``told`` — an incident covers the merchant: its text, expected end and what to do
  meanwhile, with the buttons subscribe / continue the checks / a person / "my problem is
  different";
* ``ask_region`` — only the merchant's region could decide: one short question with the
  affected areas as buttons (``region_form`` takes the answer, then this runs again);
* none covers the merchant (or it was told already in this conversation): what the
  merchant would have got without an incident board — ``clear`` when the checks were
  asked for or accepted (they start), ``clear_steps`` after a report (the fix steps and
  the offer of the checks), ``clear_offer`` after "still 1000" (the offer).

A desk that is down or answers wrongly counts as no incident: the checks go on as always.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Dict, List, Optional, Text, Tuple

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.clock import local_time
from actions.form_slots import FormSlotsFromDomainFiles
from actions.incident_reports import send_report
from actions.knowledge import load_knowledge
from actions.language import language_of, pick_text
from actions.merchant import OTHER_REGION, merchant_scope
from actions.regions import load_regions
from actions.settings import current_settings, load_labels
from actions.status_source import Incident, StatusSource
from common.incident_scope import matches, undecided_dimensions

logger = logging.getLogger(__name__)

# Legacy incidents name their region this way when they cover everyone.
EVERYWHERE = ("all", "全国")
# Typed answers to the region question that mean "none of these".
ELSEWHERE_WORDS = ("其他", "其它", "别的", "都不是", "不在", "other", "elsewhere", "none")
# At most this many area buttons (a chat app shows few buttons well).
MAX_REGION_BUTTONS = 8
# The intents that report the error rather than ask about something else (data/INTENTS.md),
# and what each gets when no incident is to be told: its answer from before the incident
# board. Any other intent (start_diagnostics, the offer's "yes") starts the checks.
CLEAR_ANSWERS = {"ask_how_to_fix": "clear_steps", "inform_not_fixed": "clear_offer"}


def bot_scope(incident: Incident) -> Optional[Dict[str, Any]]:
    """The incident's scope in the bot's terms, None when it cannot be read.

    Terminal models become knowledge keys ("A920" → ``pax_a920``, as the
    ``terminal_model`` slot holds them); an incident in the legacy shape (a ``region``
    name or code, no scope) becomes a region scope when the region table knows it."""
    if incident.scope is not None:
        scope = dict(incident.scope)
    elif not incident.region or incident.region.strip().lower() in EVERYWHERE:
        scope = {}
    else:
        table = load_regions()
        code = incident.region if table.region(incident.region) else table.from_text(incident.region)
        if code is None:
            return None
        scope = {"regions": [code]}
    models = scope.get("terminal_models") or []
    if models:
        knowledge = load_knowledge(current_settings().knowledge_file)
        scope["terminal_models"] = [knowledge.match_model(str(m)) or str(m) for m in models]
    return scope


def judge(incidents: List[Incident], merchant: Dict[str, Optional[str]]) -> Tuple[Optional[Incident], List[Incident]]:
    """The first incident that covers the merchant, and those only a region could decide."""
    undecided: List[Incident] = []
    for incident in incidents:
        scope = bot_scope(incident)
        if scope is None:
            continue
        verdict = matches(scope, merchant)
        if verdict is True:
            return incident, []
        if verdict is None and undecided_dimensions(scope, merchant) == ["regions"]:
            undecided.append(incident)
    return None, undecided


async def desk_incidents() -> List[Incident]:
    """The desk's active incidents that can be linked to (an id); empty when it is away."""
    settings = replace(current_settings(), upstream_status_url=None)
    report = await StatusSource(settings).check()
    return [incident for incident in report.incidents if incident.id is not None]


async def covering_incident(tracker: Tracker) -> Optional[Incident]:
    """The active incident that covers this merchant now, if any."""
    incident, _ = judge(await desk_incidents(), merchant_scope(tracker))
    return incident


def incident_text(incident: Incident, language: str) -> str:
    """The incident's own words in the merchant's language."""
    return pick_text(incident.message, language)


def say_incident(
    dispatcher: CollectingDispatcher,
    responses: Tuple[str, str],
    text: str,
    expected_end: Optional[str],
) -> None:
    """Send the first response with the incident's text and end time, or the second
    when no end is announced (the merchant is never told a time nobody gave)."""
    end = local_time(expected_end)
    if end:
        dispatcher.utter_message(response=responses[0], incident=text, expected_end=end)
    else:
        dispatcher.utter_message(response=responses[1], incident=text)


def ask_region(dispatcher: CollectingDispatcher, undecided: List[Incident], language: str) -> None:
    """Where is the shop? One button per affected area, and "elsewhere"."""
    table = load_regions()
    codes: List[str] = []
    for incident in undecided:
        for code in (bot_scope(incident) or {}).get("regions") or []:
            if str(code) not in codes:
                codes.append(str(code))
    buttons = [{"title": table.name(code, language), "payload": f'/inform{{"region": "{code}"}}'} for code in codes[:MAX_REGION_BUTTONS]]
    elsewhere = load_labels(current_settings().labels_file)["elsewhere"]
    buttons.append({"title": pick_text(elsewhere, language), "payload": f'/inform{{"region": "{OTHER_REGION}"}}'})
    dispatcher.utter_message(response="utter_question_region", buttons=buttons)


def answer_when_clear(tracker: Tracker) -> str:
    """What follows when no incident is told: ``clear``, ``clear_steps`` or ``clear_offer``.

    Right after the region question the merchant's last message is the region, so the
    answer decided before the question (kept in ``incident_check_for``) stands; right after
    ``action_reset_checks`` the checks were asked for; otherwise the reported intent decides.
    """
    previous = tracker.latest_action_name
    if previous == "region_form":
        return tracker.get_slot("incident_check_for") or "clear"
    if previous == "action_reset_checks":
        return "clear"
    intent = (tracker.latest_message.get("intent") or {}).get("name")
    return CLEAR_ANSWERS.get(str(intent), "clear")


class ActionCheckIncident(Action):
    """Before any check: does an active incident cover this merchant? (see the module)"""

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_check_incident"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """Tell the incident, ask for the region, or let the checks start."""
        language = language_of(tracker)
        merchant = merchant_scope(tracker)
        clear = answer_when_clear(tracker)
        incident, undecided = judge(await desk_incidents(), merchant)
        if incident is None and undecided and tracker.get_slot("region") is None:
            ask_region(dispatcher, undecided, language)
            # Kept for the check after the answer: a report still gets its own answer then.
            return [SlotSet("incident_check_for", clear), SlotSet("incident_match", "ask_region")]
        events: List[EventType] = [
            SlotSet("incident_id", incident.id if incident else None),
            SlotSet("incident_ticket", incident.ticket if incident else None),
        ]
        if incident and tracker.get_slot("incident_told") == incident.id:
            # Told already in this conversation (at the report, or before the checks): no
            # repeat, and no second report of the same trouble.
            return events + [SlotSet("incident_match", clear)]
        send_report(tracker, "reported")
        if incident is None:
            return events + [SlotSet("incident_match", clear)]
        # The text, the end, what to do meanwhile, and the four buttons (domain/incidents.yml).
        say_incident(
            dispatcher,
            ("utter_incident_active", "utter_incident_active_open"),
            incident_text(incident, language),
            incident.expected_end,
        )
        return events + [SlotSet("incident_told", incident.id), SlotSet("incident_match", "told")]


class ValidateRegionForm(FormSlotsFromDomainFiles):
    """Reads the merchant's answer to the region question: a button, a name, a number."""

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "validate_region_form"

    def validate_region(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        """A region code from the table, ``other`` for "none of these", else ask again."""
        text = str(value).strip() if value is not None else ""
        table = load_regions()
        if table.region(text):
            return {"region": text}
        if text == OTHER_REGION or any(word in text.lower() for word in ELSEWHERE_WORDS):
            return {"region": OTHER_REGION}
        code = table.from_text(text)
        if code:
            return {"region": code}
        dispatcher.utter_message(response="utter_region_unknown")
        return {"region": None}

"""The action server away: ``ActionServerDownPolicy`` answers instead of silence.

Exact predictions of the policy on trackers shaped like Rasa's after a failed custom
action (``ActionExecuted`` with nothing after it: ``MessageProcessor._run_action``
drops the events), and the guard that makes that trace unambiguous: every custom
action the dialogue runs on its own sends something when it succeeds, and a form that
runs always sets an event. The real-process check (kill the action server mid-checks)
is in ``tests/test_faults.py``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import List

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTION_LISTEN_NAME, REQUESTED_SLOT
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    Event,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa_sdk.executor import CollectingDispatcher

from actions import (
    agent_rating,
    diagnostics,
    error_codes,
    fallback,
    feedback,
    handoff,
    incident_links,
    incident_reports,
    incidents,
    new_run,
)
from actions.settings import load_settings
from policies.action_server_down import RESPONSE, ActionServerDownPolicy, custom_actions

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rasa_domain() -> Domain:
    return Domain.load(str(ROOT / "domain"))


@pytest.fixture
def policy(tmp_path) -> ActionServerDownPolicy:
    return ActionServerDownPolicy.create(
        ActionServerDownPolicy.get_default_config(),
        LocalModelStorage(tmp_path),
        Resource("action_server_down"),
        ExecutionContext(GraphSchema({}), "test"),
    )


def in_diagnostics(*more: Event) -> List[Event]:
    """A merchant at the network step who has just answered it."""
    return [
        ActionExecuted(ACTION_LISTEN_NAME),
        UserUttered("/start_diagnostics", {"name": "start_diagnostics", "confidence": 1.0}),
        ActionExecuted("diagnostics_form"),
        ActiveLoop("diagnostics_form"),
        SlotSet(REQUESTED_SLOT, "network_ok"),
        BotUttered("第1步（共4步）：检查网络。"),
        ActionExecuted(ACTION_LISTEN_NAME),
        UserUttered("还是不行", {"name": "inform_not_fixed", "confidence": 1.0}),
        ActionExecuted("action_extract_slots"),
        SlotSet("network_ok", False),
        *more,
    ]


def predict(policy, domain: Domain, events: List[Event]):
    tracker = DialogueStateTracker.from_events("merchant-1", events, domain.slots)
    return policy.predict_action_probabilities(tracker, domain)


def predicted(prediction, domain: Domain) -> List[str]:
    """The actions the prediction gives any confidence to."""
    return [domain.action_names_or_texts[i] for i, p in enumerate(prediction.probabilities) if p > 0]


def test_a_form_that_failed_gets_the_polite_answer(policy, rasa_domain):
    prediction = predict(policy, rasa_domain, in_diagnostics(ActionExecuted("diagnostics_form")))
    assert predicted(prediction, rasa_domain) == [RESPONSE]
    assert prediction.max_confidence == 1.0
    # Like RulePolicy's loop predictions: not based on user input, and above its priority 6.
    assert prediction.is_no_user_prediction is True and prediction.policy_priority == 7


@pytest.mark.parametrize("action", ["action_escalate", "action_ticket_status", "action_finish_diagnostics", "handoff_form"])
def test_any_custom_action_that_failed_gets_it(policy, rasa_domain, action):
    events = [
        ActionExecuted(ACTION_LISTEN_NAME),
        UserUttered("x", {"name": "ask_ticket_status", "confidence": 1.0}),
        ActionExecuted(action),
    ]
    assert predicted(predict(policy, rasa_domain, events), rasa_domain) == [RESPONSE]


def test_after_the_answer_it_listens_so_the_form_is_not_run_again(policy, rasa_domain):
    events = in_diagnostics(ActionExecuted("diagnostics_form"), ActionExecuted(RESPONSE), BotUttered("抱歉，我现在连不上后台检查系统"))
    prediction = predict(policy, rasa_domain, events)
    assert predicted(prediction, rasa_domain) == [ACTION_LISTEN_NAME]
    assert prediction.is_no_user_prediction is True


@pytest.mark.parametrize(
    "tail",
    [
        # The form ran: it asked the next question (events after ActionExecuted).
        [ActionExecuted("diagnostics_form"), SlotSet(REQUESTED_SLOT, "terminal_model"), BotUttered("您的终端是哪个型号？")],
        # A response action, a built-in action that may set nothing, nothing run yet.
        [ActionExecuted("utter_error_meaning"), BotUttered("错误码1000一般表示")],
        [],
    ],
)
def test_silent_when_the_action_ran(policy, rasa_domain, tail):
    prediction = predict(policy, rasa_domain, in_diagnostics(*tail))
    assert predicted(prediction, rasa_domain) == []
    assert prediction.is_no_user_prediction is False  # does not overrule anything


def test_silent_after_extract_slots_that_set_nothing(policy, rasa_domain):
    events = [
        ActionExecuted(ACTION_LISTEN_NAME),
        UserUttered("你好", {"name": "greet", "confidence": 1.0}),
        ActionExecuted("action_extract_slots"),
    ]
    assert predicted(predict(policy, rasa_domain, events), rasa_domain) == []


def test_a_new_conversation_is_left_alone(policy, rasa_domain):
    assert predicted(predict(policy, rasa_domain, []), rasa_domain) == []


def test_training_needs_the_response(policy, rasa_domain):
    assert policy.train([], rasa_domain) == policy._resource
    without = Domain.from_dict({**rasa_domain.as_dict(), "responses": {}})
    with pytest.raises(ValueError, match=RESPONSE):
        policy.train([], without)


# The guard: a custom action that succeeded never leaves the failure trace.

# Actions a form runs inside its own run (never logged as ActionExecuted on their own).
RUN_BY_FORMS = {"validate_diagnostics_form", "validate_handoff_form", "action_ask_server_ok", "validate_region_form"}


@pytest.fixture
def unreachable_desk(monkeypatch, tmp_path):
    """Every desk and status source refuses connections: the actions' quietest case."""
    settings = replace(
        load_settings(environ={}),
        desk_url="http://127.0.0.1:9",
        incident_board_url="http://127.0.0.1:9/api/incidents",
        upstream_status_url=None,
        outbox_file=tmp_path / "outbox.sqlite",
        desk_timeout_seconds=0.5,
        status_timeout_seconds=0.5,
        outbox_retry_seconds=3600,
    )
    for module in (diagnostics, handoff, agent_rating, incidents, incident_links, incident_reports):
        monkeypatch.setattr(module, "current_settings", lambda: settings)
    return settings


SCENARIOS = {
    "action_clarify": [dict(intent="nlu_fallback"), dict(intent="nlu_fallback", intent_ranking=[{"name": "faq", "confidence": 0.4}])],
    "action_record_rating": [dict(text="5星", intent="rate"), dict(text="", intent="rate"), dict(slots={"rating": 3.0}, intent="rate")],
    "action_escalate": [dict(slots={"contact": "13812345678", "problem_summary": "刷卡报1000", "merchant_ref": "898310048160123"})],
    "action_ticket_status": [dict(), dict(slots={"ticket": "PX-7K2Q9M"})],
    "action_reset_checks": [dict(), dict(slots={"network_ok": True, "fixed_step": "network"})],
    "action_record_agent_rating": [dict(slots={"agent_rating": 5.0}, intent="rate_agent"), dict(text="", intent="rate_agent")],
    "action_check_incident": [dict(), dict(slots={"merchant_id": "898440312345678", "region": "other"})],
    "action_subscribe_incident": [dict(intent="subscribe_incident")],
    "action_answer_other_code": [
        dict(intent="other_error_code", entities=[{"entity": "error_code", "value": "1001"}]),
        dict(intent="other_error_code"),
    ],
    "action_finish_diagnostics": [
        dict(slots={"network_ok": True}),
        dict(slots={"server_status": "incident", "server_ok": False}),
        dict(slots={"network_ok": False, "software_ok": False}),
    ],
}


def test_every_custom_action_the_dialogue_runs_is_covered(rasa_domain):
    assert custom_actions(rasa_domain) - set(rasa_domain.form_names) - RUN_BY_FORMS == set(SCENARIOS)


@pytest.mark.parametrize("name, case", [(n, c) for n, cases in SCENARIOS.items() for c in cases])
async def test_a_custom_action_that_ran_always_leaves_something(name, case, make_tracker, domain, unreachable_desk):
    classes = {
        "action_clarify": fallback.ActionClarify,
        "action_record_rating": feedback.ActionRecordRating,
        "action_escalate": handoff.ActionEscalate,
        "action_ticket_status": handoff.ActionTicketStatus,
        "action_finish_diagnostics": diagnostics.ActionFinishDiagnostics,
        "action_reset_checks": new_run.ActionResetChecks,
        "action_record_agent_rating": agent_rating.ActionRecordAgentRating,
        "action_check_incident": incidents.ActionCheckIncident,
        "action_subscribe_incident": incident_links.ActionSubscribeIncident,
        "action_answer_other_code": error_codes.ActionAnswerOtherCode,
    }
    dispatcher = CollectingDispatcher()
    events = await classes[name]().run(dispatcher, make_tracker(**case), domain)
    assert events or dispatcher.messages

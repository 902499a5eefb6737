"""The Rasa runtime fixes keep Rasa's behaviour exactly (rasa_server/)."""

from __future__ import annotations

import subprocess
import sys

from datetime import datetime
from typing import Any, Dict, List

import pytest
from hypothesis import event, given, strategies as st
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.core.test import (
    EvaluationStore,
    WronglyClassifiedUserUtterance,
    WronglyPredictedAction,
)
from rasa.shared.core import events as rasa_events

from rasa.server import ErrorResponse

from rasa_server import action_validation, event_bodies

VALID = [
    {"events": [], "responses": []},
    {"events": [{"event": "slot", "name": "network_ok", "value": False}], "responses": [{"response": "utter_question_terminal_model"}]},
    {"events": [{"event": "active_loop", "name": None}, {"event": "pause"}, {"event": "bot", "text": "工单 PX-ABC234"}]},
    {},
]
INVALID = [
    {"events": [{"event": "slot"}]},  # a slot event without a name
    {"events": "not a list"},
    {"events": [{"event": "no_such_event"}]},
    {"responses": ["a string, not an object"]},
    [],
    {"events": [{"event": 3}]},
    {"events": [{"event": ["slot"]}]},  # unhashable name
    {"events": [{"name": "network_ok", "value": 1}]},  # no "event" at all
]


def _has_bad_event_name(result: Any) -> bool:
    events = result.get("events") if isinstance(result, dict) else None
    if not isinstance(events, list) or not events or "event" not in events[0]:
        return False
    name = events[0]["event"]
    return not isinstance(name, str) or name not in action_validation._dispatch().by_name


@pytest.mark.parametrize("result", VALID)
def test_valid_answers_pass_like_upstream(result):
    action = RemoteAction("action_x", None)
    assert action_validation.upstream()(action, result) is True
    assert action_validation.validate_action_result(action, result) is True


@pytest.mark.parametrize("result", INVALID)
def test_invalid_answers_fail_with_upstreams_error(result):
    action = RemoteAction("action_x", None)
    with pytest.raises(ValidationError) as upstream_error:
        action_validation.upstream()(action, result)
    with pytest.raises(ValidationError) as our_error:
        action_validation.validate_action_result(action, result)
    assert action_validation.accepts(result) is False
    if _has_bad_event_name(result):
        # upstream: "{...} is not valid under any of the given schemas"; ours names the name
        assert repr(result["events"][0]["event"]) in our_error.value.message
        assert list(our_error.value.path) == list(upstream_error.value.path)
    else:
        assert our_error.value.message == upstream_error.value.message
    assert "Failed to validate Action server response" in our_error.value.message


def test_install_replaces_the_method_in_this_process():
    original = RemoteAction._validate_action_result
    try:
        action_validation.install()
        assert RemoteAction._validate_action_result is action_validation.validate_action_result
    finally:
        RemoteAction._validate_action_result = original


class _Body:
    """What rasa.server's validation reads of a Sanic request: its parsed JSON."""

    def __init__(self, json: Any) -> None:
        self.json = json


EVENT_BODIES = [
    [{"event": "bot", "text": "支付服务已恢复", "metadata": {"desk_message_id": 7, "incident_id": 1}}],
    {"event": "pause"},  # one event, not a list
    [{"event": "slot", "name": "network_ok", "value": False}, {"event": "resume"}],
    [],
]
BAD_EVENT_BODIES = [
    [{"event": "slot"}],
    [{"event": "no_such_event"}],
    [{"text": "no event name"}],
    "a string",
    [5],  # not an event object
]


@pytest.mark.parametrize("body", EVENT_BODIES)
def test_event_bodies_pass_like_upstream(body):
    assert event_bodies.upstream()(_Body(body)) is None
    assert event_bodies.validate_events_in_request_body(_Body(body)) is None


@pytest.mark.parametrize("body", BAD_EVENT_BODIES)
def test_bad_event_bodies_fail_with_upstreams_error(body):
    with pytest.raises(ErrorResponse) as upstream_error:
        event_bodies.upstream()(_Body(body))
    with pytest.raises(ErrorResponse) as our_error:
        event_bodies.validate_events_in_request_body(_Body(body))
    assert our_error.value.status == upstream_error.value.status == 400
    assert our_error.value.error_info == upstream_error.value.error_info
    assert "Failed to validate the events format" in our_error.value.error_info["message"]


@pytest.mark.process  # a fresh interpreter of the launcher (tests/harness/fixtures.py)
def test_the_launcher_is_rasas_cli():
    done = subprocess.run([sys.executable, "-m", "rasa_server", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Rasa Version      :         3.6.21" in done.stdout


# --- The event-name dispatch (action_validation.accepts) decides exactly like upstream ---

PARSE_DATA = {
    "text": "我的终端显示1000",
    "intent": {"name": "report_error", "confidence": 0.97},
    "entities": [
        {
            "entity": "error_code",
            "value": "1000",
            "start": 6,
            "end": 10,
            "confidence": 0.9,
            "extractor": "RegexEntityExtractor",
            "role": None,
            "group": None,
        }
    ],
    "intent_ranking": [{"name": "report_error", "confidence": 0.97}, {"name": "greet", "confidence": 0.01}],
    "response_selector": {
        "all_retrieval_intents": ["faq"],
        "default": {
            "response": {
                "responses": [{"text": "见说明"}],
                "confidence": 0.8,
                "intent_response_key": "faq/terminal",
                "utter_action": "utter_faq/terminal",
            },
            "ranking": [{"id": 1, "confidence": 0.8, "intent_response_key": "faq/terminal"}],
        },
    },
}

# Every event Rasa serialises, as its own as_dict() writes it.
RASA_EVENTS = [
    rasa_events.UserUttered("我的终端显示1000", parse_data=PARSE_DATA, input_channel="socketio", message_id="m-1", metadata={"x": 1}),
    rasa_events.UserUttered(None),
    rasa_events.DefinePrevUserUtteredFeaturization(True),
    rasa_events.EntitiesAdded([{"entity": "terminal_model", "value": "S90"}]),
    rasa_events.BotUttered(
        "工单 PX-ABC234", {"buttons": [{"title": "是", "payload": "/affirm"}]}, metadata={"utter_action": "utter_ticket"}
    ),
    rasa_events.SlotSet("network_ok", False),
    rasa_events.SlotSet("terminal_model", None),
    rasa_events.SlotSet("contacts", [{"phone": "138"}, 2.5]),
    rasa_events.Restarted(),
    rasa_events.UserUtteranceReverted(),
    rasa_events.AllSlotsReset(),
    rasa_events.ReminderScheduled("EXTERNAL_remind", datetime(2026, 1, 2, 3, 4, 5), entities=[{"entity": "x", "value": 1}], name="r1"),
    rasa_events.ReminderCancelled(name="r1", intent="EXTERNAL_remind"),
    rasa_events.ActionReverted(),
    rasa_events.StoryExported("/tmp/story.yml"),
    rasa_events.FollowupAction("action_submit_ticket"),
    rasa_events.ConversationPaused(),
    rasa_events.ConversationResumed(),
    rasa_events.ActionExecuted("action_listen", policy="RulePolicy", confidence=1.0, hide_rule_turn=True),
    rasa_events.ActionExecuted(action_text="好的"),
    rasa_events.AgentUttered("hi", {"x": 1}),
    rasa_events.ActiveLoop("ticket_form"),
    rasa_events.ActiveLoop(None),
    rasa_events.LoopInterrupted(True),
    rasa_events.ActionExecutionRejected("action_x", "RulePolicy", 0.5),
    rasa_events.SessionStarted(metadata={"a": 1}),
]
# LegacyForm / LegacyFormValidation serialise as active_loop / loop_interrupted; their
# own names are still in the schema (old action servers send them).
EVENT_DICTS: List[Dict[str, Any]] = [event.as_dict() for event in RASA_EVENTS] + [
    {"event": "form", "name": "ticket_form", "timestamp": None},
    {"event": "form_validation", "validate": False},
]
# Events Rasa has but the schema does not list: both sides must reject them.
OFF_SCHEMA = [
    WronglyPredictedAction("action_a", "", "action_b").as_dict(),
    WronglyClassifiedUserUtterance(
        rasa_events.UserUttered("x", {"name": "a"}),
        EvaluationStore(intent_predictions=["b"], intent_targets=["a"]),
    ).as_dict(),
]

MORE_INVALID = [
    None,
    "events",
    3,
    {"events": None},
    {"events": {}},
    {"events": [[]]},
    {"events": ["slot"]},
    {"events": [{}]},
    {"events": [{"event": None}]},
    {"events": [{"event": True}]},
    {"events": [{"event": "Slot", "name": "a", "value": 1}]},
    {"events": [{"event": "slot ", "name": "a", "value": 1}]},
    {"events": [{"event": "slot", "name": None, "value": 1}]},
    {"events": [{"event": "slot", "name": "a"}]},
    {"events": [{"event": "slot", "value": 1}]},
    {"events": [{"event": "slot", "name": "a", "value": 1, "timestamp": "yesterday"}]},
    {"events": [{"event": "slot", "name": "a", "value": 1, "metadata": []}]},
    {"events": [{"event": "entities"}]},
    {"events": [{"event": "entities", "entities": [{"entity": "x"}]}]},
    {"events": [{"event": "action", "hide_rule_turn": "yes"}]},
    {"events": [{"event": "action", "confidence": "high"}]},
    {"events": [{"event": "user", "text": 5}]},
    {"events": [{"event": "user", "parse_data": {"entities": [{"entity": 1, "value": 1}]}}]},
    {"events": [{"event": "user", "parse_data": {"intent": {"confidence": "1"}}}]},
    {"responses": {}},
    {"responses": [None]},
    {"responses": "utter_x"},
    {"events": [{"event": "pause"}] * 300 + [{"event": "nope"}]},
]
BIG_VALID = [
    {"events": EVENT_DICTS * 20, "responses": [{"response": "utter_x"}] * 50},
    {"events": [{"event": "bot", "text": "x" * 1_000_000}]},
    {"events": [{"event": "slot", "name": "", "value": {"": [{}] * 100}}]},
    {"events": [{"event": "pause", "unknown_key": object.__name__}], "extra_top_level": 1},
    # not what Rasa means, but the schema's patternProperties branch takes it: so do we
    {"events": [{"event": "user", "parse_data": {"response_selector": {"all_retrieval_intents": {}}}}]},
]


def _upstream_accepts(result: Any) -> bool:
    try:
        return action_validation.upstream()(RemoteAction("action_x", None), result)
    except ValidationError:
        return False


def _ours_accepts(result: Any) -> bool:
    try:
        return action_validation.validate_action_result(RemoteAction("action_x", None), result)
    except ValidationError:
        return False


def test_the_schema_meets_the_dispatch_precondition():
    """Every branch pins its own name, so the fast path is really in use."""
    dispatch = action_validation._dispatch()
    assert dispatch is not None
    branches = RemoteAction.action_response_format_spec()["properties"]["events"]["items"]
    assert len(dispatch.by_name) == len(branches["oneOf"]) == 23
    assert {event["event"] for event in EVENT_DICTS} == set(dispatch.by_name)


@pytest.mark.parametrize("event", EVENT_DICTS, ids=lambda event: event["event"])
def test_every_rasa_event_passes_like_upstream(event):
    result = {"events": [event], "responses": [{"response": "utter_ok"}]}
    assert _upstream_accepts(result) is True
    assert action_validation.accepts(result) is True
    assert _ours_accepts(result) is True


@pytest.mark.parametrize("result", BIG_VALID + [{"events": EVENT_DICTS}])
def test_large_valid_answers_pass_like_upstream(result):
    assert _upstream_accepts(result) is action_validation.accepts(result) is True


@pytest.mark.parametrize("result", MORE_INVALID + [{"events": [e]} for e in OFF_SCHEMA])
def test_more_invalid_answers_fail_like_upstream(result):
    action = RemoteAction("action_x", None)
    assert action_validation.accepts(result) is False
    with pytest.raises(ValidationError):
        action_validation.upstream()(action, result)
    with pytest.raises(ValidationError) as our_error:
        action_validation.validate_action_result(action, result)
    assert "Failed to validate Action server response" in our_error.value.message


def test_an_unknown_event_name_is_named_in_the_error():
    with pytest.raises(ValidationError, match="has the unknown event name 'wrong_action'"):
        action_validation.validate_action_result(RemoteAction("action_x", None), {"events": [OFF_SCHEMA[0]]})


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_KEYS = [
    "event",
    "name",
    "value",
    "timestamp",
    "metadata",
    "text",
    "parse_data",
    "entities",
    "policy",
    "confidence",
    "hide_rule_turn",
    "action_text",
    "input_channel",
    "data",
]
_names = st.sampled_from(sorted({event["event"] for event in EVENT_DICTS + OFF_SCHEMA}) + ["x"])
_parse_data = st.sampled_from(
    [
        PARSE_DATA,
        {**PARSE_DATA, "entities": [{"entity": "e"}]},
        {**PARSE_DATA, "intent": []},
        {"response_selector": {"all_retrieval_intents": {}}},
        {"response_selector": {"a": {"ranking": [{"id": "1"}]}}},
    ]
)
_mutation = st.tuples(st.sampled_from(_KEYS) | st.text(max_size=3), st.none() | _json | _names | _parse_data | st.just("<delete>"))


@st.composite
def _events(draw: Any) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_json)
    event = dict(draw(st.sampled_from(EVENT_DICTS + OFF_SCHEMA)))
    for key, value in draw(st.lists(_mutation, max_size=2)):
        if value == "<delete>":
            event.pop(key, None)
        else:
            event[key] = value
    return event


_answers = (
    st.fixed_dictionaries(
        {},
        optional={
            "events": st.lists(_events(), max_size=6) | _json,
            "responses": st.lists(st.dictionaries(st.text(max_size=3), _json, max_size=2) | _json, max_size=3) | _json,
        },
    )
    | _json
)


@given(_answers)
def test_mutated_answers_are_decided_like_upstream(result):
    verdict = _upstream_accepts(result)
    event(f"upstream accepts: {verdict}")  # --hypothesis-show-statistics: both sides drawn
    assert action_validation.accepts(result) is verdict
    assert _ours_accepts(result) is verdict


_PINLESS = {"properties": {"event": {"type": "string"}, "free": {"type": "integer"}}}
_SECOND_SLOT = {"properties": {"event": {"enum": ["slot", "pause"]}, "value": {"type": "string"}}}


@pytest.mark.parametrize("extra_branch, dispatches", [(_PINLESS, False), (_SECOND_SLOT, True)])
def test_a_schema_without_the_precondition_falls_back_to_the_full_validator(monkeypatch, extra_branch, dispatches):
    """A branch that pins no name disables the dispatch; a name two branches claim is
    checked against the whole event schema (exact oneOf)."""
    real = RemoteAction.action_response_format_spec()
    items = real["properties"]["events"]["items"]
    schema = {
        **real,
        "properties": {**real["properties"], "events": {"type": "array", "items": {**items, "oneOf": items["oneOf"] + [extra_branch]}}},
    }
    monkeypatch.setattr(RemoteAction, "action_response_format_spec", staticmethod(lambda: schema))
    action_validation.action_result_validator.cache_clear()
    action_validation._dispatch.cache_clear()
    try:
        assert (action_validation._dispatch() is not None) is dispatches
        full = action_validation.action_result_validator()
        for result in [
            {"events": [{"event": "slot", "name": "a", "value": "s"}]},  # 2 match
            {"events": [{"event": "slot", "name": "a", "value": 1}]},
            {"events": [{"event": "pause"}]},
            {"events": [{"event": "pause", "value": 1}]},
            {"events": [{"event": "x", "free": 1}]},
            {"events": [{"event": "x", "free": "1"}]},
        ]:
            assert action_validation.accepts(result) is full.is_valid(result), result
    finally:
        action_validation.action_result_validator.cache_clear()
        action_validation._dispatch.cache_clear()

"""The tracker copy without replay leaves trackers exactly as Rasa's replaying copy does.

Random conversations of every event type that changes a tracker (slots of the real domain,
loops interrupted and rejected, restarts, sessions, reverts, pauses, follow-ups, entities
added to the latest message): the copy has the state of upstream's copy, later events
change both copies alike, and the original never changes.
"""

from __future__ import annotations

from typing import Any, Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActionReverted,
    ActiveLoop,
    AllSlotsReset,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    DefinePrevUserUtteredFeaturization,
    EntitiesAdded,
    FollowupAction,
    LoopInterrupted,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
    UserUtteranceReverted,
)
from rasa.shared.core.trackers import DialogueStateTracker, EventVerbosity

from rasa_server import tracker_copy
from rasa_server.tracker_copy import copy_tracker
from tests.harness.examples import examples

DOMAIN = Domain.load("domain")
SLOTS = [slot.name for slot in DOMAIN.slots]
FORM = DOMAIN.form_names[0]
ACTIONS = ["action_listen", FORM, "utter_greet", "action_diagnose", "action_default_fallback"]
INTENTS = ["greet", "ask_what_is_1000", "affirm", "deny"]

slot_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=5),
    st.lists(st.text(max_size=3), max_size=2),
    st.sampled_from(["zh", "en", "v5.2"]),
)
entities = st.lists(
    st.fixed_dictionaries({"entity": st.sampled_from(["terminal_model", "language"]), "value": st.text(max_size=4)}), max_size=2
)

events = st.one_of(
    st.builds(
        lambda text, intent, found: UserUttered(
            text,
            intent={"name": intent, "confidence": 1.0},
            entities=found,
            parse_data={"intent": {"name": intent, "confidence": 1.0}, "entities": found},
        ),
        st.text(max_size=8),
        st.sampled_from(INTENTS),
        entities,
    ),
    st.builds(EntitiesAdded, entities),
    st.builds(DefinePrevUserUtteredFeaturization, st.booleans()),
    st.builds(ActionExecuted, st.sampled_from(ACTIONS)),
    st.builds(BotUttered, st.text(max_size=8)),
    st.builds(SlotSet, st.sampled_from(SLOTS), slot_values),
    st.builds(ActiveLoop, st.sampled_from([FORM, None])),
    st.builds(LoopInterrupted, st.booleans()),
    st.builds(ActionExecutionRejected, st.sampled_from(ACTIONS)),
    st.builds(FollowupAction, st.sampled_from(ACTIONS)),
    st.sampled_from(
        [ConversationPaused, ConversationResumed, Restarted, SessionStarted, AllSlotsReset, UserUtteranceReverted, ActionReverted]
    ).map(lambda kind: kind()),
)


def state(tracker: DialogueStateTracker) -> Dict[str, Any]:
    """Everything a tracker holds; the same event objects, latest messages that are
    events by identity (upstream's reset makes fresh empty ones)."""

    def message(latest: Any) -> Any:
        if any(latest is event for event in tracker.events):
            return ("event", id(latest))
        return ("empty", type(latest), getattr(latest, "text", None))

    return {
        "events": [id(event) for event in tracker.events],
        "slots": {name: (type(slot), slot.value, slot.has_been_set) for name, slot in tracker.slots.items()},
        "paused": tracker.is_paused(),
        "followup": tracker.followup_action,
        "latest_action": tracker.latest_action,
        "latest_message": message(tracker.latest_message),
        "latest_bot": message(tracker.latest_bot_utterance),
        "active_loop": tracker.active_loop,
        "ids": (
            tracker.sender_id,
            tracker.sender_source,
            tracker.model_id,
            tracker.assistant_id,
            tracker.is_rule_tracker,
            tracker._max_event_history,
        ),
        "current": {key: value for key, value in tracker.current_state(EventVerbosity.ALL).items() if key != "events"},
    }


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(events, max_size=25), st.lists(events, max_size=6), st.booleans())
def test_the_copy_is_upstreams_copy(history, later, rule_tracker):
    original = DialogueStateTracker("merchant", DOMAIN.slots, is_rule_tracker=rule_tracker)
    original.model_id, original.assistant_id = "model", "pos1000-assistant"
    for event in history:
        original.update(event)
    before = state(original)

    ours, upstream = copy_tracker(original), tracker_copy._UPSTREAM_COPY(original)
    assert state(ours) == state(upstream)
    for event in later:  # e.g. the action's own events on the temporary tracker
        ours.update(event)
        upstream.update(event)
        assert state(ours) == state(upstream)
    assert state(original) == before


@pytest.mark.parametrize(
    "tracker",
    [
        DialogueStateTracker("capped", DOMAIN.slots, max_event_history=3),
        DialogueStateTracker("any slots", None),
    ],
    ids=["capped history", "slots on demand"],
)
def test_capped_or_open_trackers_get_upstreams_copy(tracker, monkeypatch):
    for event in [
        ActionExecuted("action_listen"),
        UserUttered("hi"),
        SlotSet("language", "zh"),
        ActionExecuted("utter_greet"),
        BotUttered("hello"),
    ]:
        tracker.update(event)
    calls = []
    monkeypatch.setattr(
        tracker_copy, "_UPSTREAM_COPY", lambda t: calls.append(t) or DialogueStateTracker.travel_back_in_time(t, float("inf"))
    )
    copied = copy_tracker(tracker)
    assert calls == [tracker]
    assert [id(e) for e in copied.events] == [id(e) for e in tracker.events]


class Annotated(DialogueStateTracker):
    """A tracker subclass: its own ``init_copy`` makes copies of its own kind."""

    def init_copy(self) -> "Annotated":
        return Annotated(self.sender_id, self.slots.values(), self._max_event_history)


def test_a_subclass_is_copied_through_its_init_copy():
    original = Annotated("merchant", DOMAIN.slots)
    for event in [ActionExecuted("action_listen"), UserUttered("hi"), SlotSet("language", "zh")]:
        original.update(event)
    ours, upstream = copy_tracker(original), tracker_copy._UPSTREAM_COPY(original)
    assert type(ours) is Annotated and state(ours) == state(upstream)


def test_installed_trackers_copy_this_way(monkeypatch):
    monkeypatch.setattr(DialogueStateTracker, "copy", DialogueStateTracker.copy)
    tracker_copy.install()
    assert DialogueStateTracker.copy is copy_tracker

"""A rule policy prediction turns the conversation into states once, not twice.

Right after a user message, ``RulePolicy._predict`` looks for rules twice — once reading
the message's text, once its intent — and each time its featurizer builds the states of the
whole conversation from scratch (``TrackerFeaturizer._create_states`` →
``tracker.past_states``: every event replayed onto a fresh tracker, a state taken at every
action; py-spy: ~6 % of a message's CPU over all predictions). Both builds read the same
tracker with the same options and give the same states; only what the featurizer does
afterwards (choosing text or intent for the last user turn, in place) differs.

So during one ``_predict`` call the states built for a tracker are kept, and every request
for them — the first included — gets its own copy of each state and of each of its parts
(the featurizer edits those in place), so no caller sees another's edits. Outside a rule
policy's prediction, and for any other tracker or options, states are built as upstream
builds them.
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Dict, List, Optional, Text, Tuple

from rasa.core.featurizers.tracker_featurizers import TrackerFeaturizer
from rasa.core.policies.policy import PolicyPrediction
from rasa.core.policies.rule_policy import RulePolicy
from rasa.shared.core.domain import Domain, State
from rasa.shared.core.trackers import DialogueStateTracker

_UPSTREAM_PREDICT = RulePolicy._predict
_UPSTREAM_CREATE_STATES = TrackerFeaturizer._create_states

# The tracker and domain of the rule policy prediction running now, and the states built
# for them so far: (omit_unset_slots, ignore_rule_only_turns, rule_only_data, states).
_Built = List[Tuple[bool, bool, Optional[Dict[Text, Any]], List[State]]]
_PREDICTION: ContextVar[Optional[Tuple[DialogueStateTracker, Domain, _Built]]] = ContextVar(
    "rule_policy_prediction", default=None)


def predict(
    self: RulePolicy, tracker: DialogueStateTracker, domain: Domain
) -> Tuple[PolicyPrediction, Optional[Text]]:
    """Upstream's prediction, with the conversation's states built at most once."""
    token = _PREDICTION.set((tracker, domain, []))
    try:
        return _UPSTREAM_PREDICT(self, tracker, domain)
    finally:
        _PREDICTION.reset(token)


def create_states(
    tracker: DialogueStateTracker,
    domain: Domain,
    omit_unset_slots: bool = False,
    ignore_rule_only_turns: bool = False,
    rule_only_data: Optional[Dict[Text, Any]] = None,
) -> List[State]:
    """The tracker's states, as ``tracker.past_states`` gives them (a fresh copy)."""
    prediction = _PREDICTION.get()
    if prediction is None or prediction[0] is not tracker or prediction[1] is not domain:
        return _UPSTREAM_CREATE_STATES(tracker, domain, omit_unset_slots,
                                       ignore_rule_only_turns, rule_only_data)
    built = prediction[2]
    options = (omit_unset_slots, ignore_rule_only_turns, rule_only_data)
    for *same, states in built:
        if tuple(same) == options:
            return copy_states(states)
    states = _UPSTREAM_CREATE_STATES(tracker, domain, *options)
    built.append((*options, states))
    return copy_states(states)


def copy_states(states: List[State]) -> List[State]:
    """Each state and each of its parts copied (their values are strings and tuples)."""
    return [{part: dict(values) if isinstance(values, dict) else values
             for part, values in state.items()} for state in states]


def install() -> None:
    """Build states this way in every rule policy prediction of this process."""
    RulePolicy._predict = predict
    TrackerFeaturizer._create_states = staticmethod(create_states)

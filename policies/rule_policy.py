"""A rule policy that matches its rules without testing every rule against every turn, and
turns the conversation into states once per prediction, not twice.

Rule matching. ``RulePolicy._get_possible_keys`` finds the rules that apply to a
conversation: it starts from all rules (147 here, plus 35 for forms' unhappy paths) and, for
every state of the conversation from the newest back to the first, keeps the rules that
state satisfies. It does this two or three times per prediction and three or so predictions
per message (py-spy: ~6 % of a message's CPU). Two facts let most of that work go:

- A rule whose newest state names a previous action (``action_name``, and not "should not
  be set") applies only to a conversation whose newest state names that same previous
  action: ``_is_rule_applicable`` returns ``False`` for every other state. So the newest
  turn is tested only against the rules without such a name and those with the
  conversation's previous action.
- A rule of n states applies at every turn index ≥ n (``_is_rule_applicable``'s first
  test), so once the turn index reaches the longest rule still possible, or no rule is
  left, nothing changes any more.

Each remaining test is upstream's own ``_is_rule_applicable``, so the result is exactly
upstream's set. A subclass that overrides the matching goes upstream.

States. Right after a user message, ``RulePolicy._predict`` looks for rules twice — once
reading the message's text, once its intent — and each time its featurizer builds the
states of the whole conversation from scratch (``TrackerFeaturizer._create_states`` →
``tracker.past_states``: every event replayed onto a fresh tracker; py-spy: ~6 % of a
message's CPU over all predictions). Both builds read the same tracker with the same
options and give the same states; only what the featurizer does afterwards (choosing text
or intent for the last user turn, in place) differs. So during one ``_predict`` call the
policy's featurizer (``StatesOnceTrackerFeaturizer``) keeps the states it built for that
tracker, and every request for them — the first included — gets its own copy of each
state and of each of its parts (the featurizer edits those in place). Outside a
prediction, and for any other tracker or options, states are built as upstream builds them.

Both rely on what upstream's methods do (which states ``_is_rule_applicable`` and
``_does_rule_match_state`` accept; that ``_predict`` only reads the tracker), so the policy
refuses to be built (``ReplacementCheckError``) when those sources are not the ones read
(``UPSTREAM``).
"""

from __future__ import annotations

import warnings
from contextvars import ContextVar
from typing import Any, Dict, FrozenSet, List, Optional, Set, Text, Tuple

from rasa.core.featurizers.tracker_featurizers import (
    MaxHistoryTrackerFeaturizer,
    TrackerFeaturizer,
)
from rasa.core.policies.policy import PolicyPrediction
from rasa.core.policies.rule_policy import RulePolicy
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.core.constants import POLICY_MAX_HISTORY
from rasa.shared.core.constants import PREVIOUS_ACTION, SHOULD_NOT_BE_SET
from rasa.shared.core.domain import Domain, State
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import ACTION_NAME

from rasa_server.replacements import Upstream, require_unchanged

# The methods relied on and re-implemented below, as they were read.
UPSTREAM = (
    Upstream(
        "rasa.core.policies.rule_policy.RulePolicy._get_possible_keys", "2915fd81711e194c6d667728e00bd0e51e9c1c2791a0be14c55f0ef9938f9936"
    ),
    Upstream(
        "rasa.core.policies.rule_policy.RulePolicy._is_rule_applicable", "64a108b016b46e573d6020b755a6036439dc207a364b45c9ea5dcb0f18dc7068"
    ),
    Upstream(
        "rasa.core.policies.rule_policy.RulePolicy._does_rule_match_state",
        "d3109c1a97de319ceee17570d2d96b51c2fa0006379c5a491d5ed7df136666a7",
    ),
    Upstream("rasa.core.policies.rule_policy.RulePolicy._predict", "f5182d8a10639e14d2643795210767a17fc4c8b5c2852b946f41c6c9f1a8a4e0"),
    Upstream(
        "rasa.core.featurizers.tracker_featurizers.TrackerFeaturizer._create_states",
        "2fed265eee3bfa38bef58c41b618f4bc7cb68219a91c7b2b2488603403c5e86a",
    ),
)

# Rasa's recipe validator looks for `RulePolicy` itself (`==`, not a subclass) and would
# warn that default intents such as /restart trigger nothing; this subclass handles them.
warnings.filterwarnings("ignore", message="'RulePolicy' is not included in the model's policy")


class RuleIndex:
    """A rule lookup's keys by the previous action their newest state names."""

    def __init__(self, lookup: Dict[Text, Text]) -> None:
        self.keys: FrozenSet[Text] = frozenset(lookup)
        self.unnamed: List[Text] = []
        self.by_action: Dict[Text, List[Text]] = {}
        self.length: Dict[Text, int] = {}
        for key in lookup:
            rule_states = RulePolicy._rule_key_to_state(key)
            self.length[key] = len(rule_states)
            name = previous_action_name(rule_states[-1]) if rule_states else None
            if name and name != SHOULD_NOT_BE_SET:
                self.by_action.setdefault(name, []).append(key)
            else:
                self.unnamed.append(key)

    def candidates(self, newest: State) -> List[Text]:
        """The keys that may apply to a conversation whose newest state is ``newest``."""
        previous = previous_action_name(newest)
        return self.unnamed + (self.by_action.get(previous, []) if previous is not None else [])


def previous_action_name(state: State) -> Optional[Text]:
    """The previous action's name in a rule or conversation state, as the matching reads it."""
    return state.get(PREVIOUS_ACTION, {}).get(ACTION_NAME)


# id(lookup) → its index; checked against the lookup's keys on use, since a policy being
# trained fills its lookup while it checks rules.
_INDEXES: Dict[int, Tuple[Dict[Text, Text], RuleIndex]] = {}


def index_for(lookup: Dict[Text, Text]) -> RuleIndex:
    """The index of ``lookup``, built once per lookup (and again if its keys changed)."""
    cached = _INDEXES.get(id(lookup))
    if cached is None or cached[0] is not lookup or cached[1].keys != lookup.keys():
        cached = _INDEXES[id(lookup)] = (lookup, RuleIndex(lookup))
    return cached[1]


# The tracker and domain of the rule policy prediction running now, and the states built
# for them so far: (omit_unset_slots, ignore_rule_only_turns, rule_only_data, states).
_Built = List[Tuple[bool, bool, Optional[Dict[Text, Any]], List[State]]]
_PREDICTION: ContextVar[Optional[Tuple[DialogueStateTracker, Domain, _Built]]] = ContextVar("rule_policy_prediction", default=None)


def copy_states(states: List[State]) -> List[State]:
    """Each state and each of its parts copied (their values are strings and tuples)."""
    return [{part: dict(values) if isinstance(values, dict) else values for part, values in state.items()} for state in states]


@TrackerFeaturizer.register("StatesOnceTrackerFeaturizer")
class StatesOnceTrackerFeaturizer(MaxHistoryTrackerFeaturizer):
    """``MaxHistoryTrackerFeaturizer`` that, inside an ``IndexedRulePolicy`` prediction,
    builds the predicted tracker's states once and hands out copies."""

    @staticmethod
    def _create_states(
        tracker: DialogueStateTracker,
        domain: Domain,
        omit_unset_slots: bool = False,
        ignore_rule_only_turns: bool = False,
        rule_only_data: Optional[Dict[Text, Any]] = None,
    ) -> List[State]:
        """The tracker's states, as ``tracker.past_states`` gives them (a fresh copy)."""
        upstream = MaxHistoryTrackerFeaturizer._create_states
        prediction = _PREDICTION.get()
        if prediction is None or prediction[0] is not tracker or prediction[1] is not domain:
            return upstream(tracker, domain, omit_unset_slots, ignore_rule_only_turns, rule_only_data)
        built = prediction[2]
        options = (omit_unset_slots, ignore_rule_only_turns, rule_only_data)
        for *same, states in built:
            if tuple(same) == options:
                return copy_states(states)
        states = upstream(tracker, domain, *options)
        built.append((*options, states))
        return copy_states(states)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True)
class IndexedRulePolicy(RulePolicy):
    """Rasa's ``RulePolicy`` (same options, rules and predictions) with indexed rule matching
    and the conversation's states built once per prediction. Use it in ``config.yml`` in
    place of ``RulePolicy``; it refuses to be built when the upstream methods it relies on
    changed (``UPSTREAM``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Rasa's policy (same arguments), once upstream's sources are checked."""
        require_unchanged("policies/rule_policy.py", UPSTREAM)
        super().__init__(*args, **kwargs)

    def _standard_featurizer(self) -> MaxHistoryTrackerFeaturizer:
        return StatesOnceTrackerFeaturizer(state_featurizer=None, max_history=self.config[POLICY_MAX_HISTORY])

    def train(self, training_trackers: List[TrackerWithCachedStates], domain: Domain, **kwargs: Any) -> Resource:
        """Upstream's training, after the domain check Rasa's validator makes only for
        ``RulePolicy`` itself (the fallback action must be in the domain)."""
        self.raise_if_incompatible_with_domain(self.config, domain)
        return super().train(training_trackers, domain, **kwargs)

    def _predict(self, tracker: DialogueStateTracker, domain: Domain) -> Tuple[PolicyPrediction, Optional[Text]]:
        """Upstream's prediction, with the conversation's states built at most once."""
        token = _PREDICTION.set((tracker, domain, []))
        try:
            return super()._predict(tracker, domain)
        finally:
            _PREDICTION.reset(token)

    def _get_possible_keys(self, lookup: Dict[Text, Text], states: List[State]) -> Set[Text]:
        """The keys of ``lookup`` whose rules apply to ``states`` (upstream's result)."""
        cls = type(self)
        if (
            cls._is_rule_applicable is not RulePolicy._is_rule_applicable
            or cls._does_rule_match_state is not RulePolicy._does_rule_match_state
            or not states
        ):
            return super()._get_possible_keys(lookup, states)
        index = index_for(lookup)
        possible = {key for key in index.candidates(states[-1]) if self._is_rule_applicable(key, 0, states[-1])}
        for turn, state in enumerate(reversed(states[:-1]), start=1):
            if not possible or turn >= max(index.length[key] for key in possible):
                break
            possible = {key for key in possible if self._is_rule_applicable(key, turn, state)}
        return possible

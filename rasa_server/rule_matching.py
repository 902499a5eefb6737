"""The rule policy's rule matching without testing every rule against every turn.

``RulePolicy._get_possible_keys`` finds the rules that apply to a conversation: it starts
from all rules (147 here, plus 35 for forms' unhappy paths) and, for every state of the
conversation from the newest back to the first, keeps the rules that state satisfies. It
does this two or three times per prediction and three or so predictions per message
(py-spy: ~6 % of a message's CPU). Two facts let most of that work go:

- A rule whose newest state names a previous action (``action_name``, and not "should not
  be set") applies only to a conversation whose newest state names that same previous
  action: ``_is_rule_applicable`` returns ``False`` for every other state. So the newest
  turn is tested only against the rules without such a name and those with the
  conversation's previous action.
- A rule of n states applies at every turn index ≥ n (``_is_rule_applicable``'s first
  test), so once the turn index reaches the longest rule still possible, or no rule is
  left, nothing changes any more.

Each remaining test is upstream's own ``_is_rule_applicable``, so the result is exactly
upstream's set. A policy class that overrides the matching goes upstream.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional, Set, Text, Tuple

from rasa.core.policies.rule_policy import RulePolicy
from rasa.shared.core.constants import PREVIOUS_ACTION, SHOULD_NOT_BE_SET
from rasa.shared.core.domain import State
from rasa.shared.nlu.constants import ACTION_NAME

_UPSTREAM_GET_POSSIBLE_KEYS = RulePolicy._get_possible_keys
_UPSTREAM_IS_RULE_APPLICABLE = RulePolicy._is_rule_applicable
_UPSTREAM_DOES_RULE_MATCH_STATE = RulePolicy._does_rule_match_state


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


def get_possible_keys(
    self: RulePolicy, lookup: Dict[Text, Text], states: List[State]
) -> Set[Text]:
    """The keys of ``lookup`` whose rules apply to ``states`` (upstream's result)."""
    cls = type(self)
    if (cls._is_rule_applicable is not _UPSTREAM_IS_RULE_APPLICABLE
            or cls._does_rule_match_state is not _UPSTREAM_DOES_RULE_MATCH_STATE
            or not states):
        return _UPSTREAM_GET_POSSIBLE_KEYS(self, lookup, states)
    index = index_for(lookup)
    possible = {key for key in index.candidates(states[-1])
                if self._is_rule_applicable(key, 0, states[-1])}
    for turn, state in enumerate(reversed(states[:-1]), start=1):
        if not possible or turn >= max(index.length[key] for key in possible):
            break
        possible = {key for key in possible if self._is_rule_applicable(key, turn, state)}
    return possible


def install() -> None:
    """Match every rule policy's rules of this process this way."""
    RulePolicy._get_possible_keys = get_possible_keys

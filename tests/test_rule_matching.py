"""``IndexedRulePolicy``'s rule matching finds exactly the rules upstream's
``RulePolicy._get_possible_keys`` finds.

Hypothesis builds rule lookups and conversations from a small alphabet — previous actions
named or given as text, "should not be set" values, conversation-start states, intents,
entities (lists in the keys' JSON), slots and active loops — so that rules match, half
match and fail at every turn. Then the trained model's own rules on every turn of the test
stories, and the cases that must go upstream or rebuild the index. A changed upstream
method refuses to build the policy; ``config.yml`` names it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest
import yaml
from hypothesis import given, settings, strategies as st
from rasa.core.policies.rule_policy import RULES, RULES_FOR_LOOP_UNHAPPY_PATH, RulePolicy
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTIVE_LOOP, LOOP_NAME, PREVIOUS_ACTION, SHOULD_NOT_BE_SET, SLOTS, USER
from rasa.shared.nlu.constants import ACTION_NAME, ACTION_TEXT, ENTITIES, INTENT

from policies import rule_policy
from policies.rule_policy import IndexedRulePolicy
from rasa_server.replacements import ReplacementCheckError, Upstream
from tests.trained_model import story_turns
from tests.harness.examples import examples

upstream = RulePolicy._get_possible_keys
ROOT = Path(__file__).resolve().parent.parent


def get_possible_keys(policy: IndexedRulePolicy, lookup: Dict[str, str], states: List[Dict[str, Any]]) -> Set[str]:
    """The policy's own matching (``IndexedRulePolicy._get_possible_keys``)."""
    return policy._get_possible_keys(lookup, states)


def build(tmp_path: Path) -> IndexedRulePolicy:
    return IndexedRulePolicy.create(
        IndexedRulePolicy.get_default_config(),
        LocalModelStorage(tmp_path),
        Resource("rule_policy"),
        ExecutionContext(GraphSchema({}), "test"),
    )


ACTIONS = ["action_listen", "utter_greet", "diagnostics_form", SHOULD_NOT_BE_SET, ""]
previous_action = st.one_of(
    st.fixed_dictionaries({ACTION_NAME: st.sampled_from(ACTIONS)}),
    st.fixed_dictionaries({ACTION_TEXT: st.sampled_from(["hi", "bye"])}),
)
user = st.fixed_dictionaries(
    {},
    optional={
        INTENT: st.sampled_from(["greet", "deny", "faq"]),
        ENTITIES: st.lists(st.sampled_from(["model", "version"]), unique=True, max_size=2).map(tuple),
    },
)
state = st.fixed_dictionaries(
    {},
    optional={
        PREVIOUS_ACTION: previous_action,
        USER: user,
        SLOTS: st.fixed_dictionaries({}, optional={"terminal_model": st.sampled_from([(1.0,), (0.0,), SHOULD_NOT_BE_SET])}),
        ACTIVE_LOOP: st.fixed_dictionaries({LOOP_NAME: st.sampled_from(["diagnostics_form", SHOULD_NOT_BE_SET])}),
    },
)
conversation = st.lists(state, min_size=1, max_size=8)


def key_for(rule_states: List[Dict[str, Any]]) -> str:
    """A rule key as Rasa writes it (sorted JSON; tuples become lists)."""
    return json.dumps(rule_states, sort_keys=True)


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> IndexedRulePolicy:
    return build(tmp_path_factory.mktemp("rule-policy"))


@settings(max_examples=examples(400), deadline=None)
@given(rules=st.lists(st.lists(state, max_size=4), max_size=30), conversations=st.lists(conversation, min_size=1, max_size=5))
def test_same_keys_as_upstream(policy, rules, conversations):
    lookup = {key_for(rule): f"action_{number}" for number, rule in enumerate(rules)}
    for states in conversations:
        assert get_possible_keys(policy, lookup, states) == upstream(policy, lookup, states)


@given(rules=st.lists(st.lists(state, min_size=1, max_size=3), min_size=1, max_size=10), states=conversation)
def test_a_rule_copied_from_the_conversation_applies(policy, rules, states):
    # A rule made of the conversation's own newest states must be found (and upstream
    # finds it too): the index cannot have put it in the wrong bucket.
    own = key_for(states[-3:])
    lookup = {key_for(rule): "action_other" for rule in rules}
    lookup[own] = "action_own"
    found = get_possible_keys(policy, lookup, states)
    assert found == upstream(policy, lookup, states)
    assert own in found


def test_no_states_and_no_rules(policy):
    lookup = {key_for([{PREVIOUS_ACTION: {ACTION_NAME: "action_listen"}}]): "utter_greet"}
    assert get_possible_keys(policy, lookup, []) == upstream(policy, lookup, []) == set(lookup)
    newest = [{PREVIOUS_ACTION: {ACTION_NAME: "action_listen"}}]
    assert get_possible_keys(policy, {}, newest) == set()


def test_the_index_follows_a_lookup_that_changes(policy):
    listen = {PREVIOUS_ACTION: {ACTION_NAME: "action_listen"}, USER: {INTENT: "greet"}}
    lookup = {key_for([{PREVIOUS_ACTION: {ACTION_NAME: "utter_greet"}}]): "action_listen"}
    assert get_possible_keys(policy, lookup, [listen]) == set()
    # A policy in training adds rules to its lookup between checks.
    lookup[key_for([listen])] = "utter_greet"
    assert get_possible_keys(policy, lookup, [listen]) == {key_for([listen])}


def test_a_policy_with_its_own_matching_goes_upstream(policy, monkeypatch):
    class Lenient(IndexedRulePolicy):
        def _is_rule_applicable(self, rule_key, turn_index, conversation_state) -> bool:
            return True

    lenient = object.__new__(Lenient)
    lenient.__dict__.update(vars(policy))
    lookup = {key_for([{PREVIOUS_ACTION: {ACTION_NAME: "utter_greet"}}]): "action_listen"}
    states = [{PREVIOUS_ACTION: {ACTION_NAME: "action_listen"}}]
    calls = []
    monkeypatch.setattr(RulePolicy, "_get_possible_keys", lambda *args: calls.append(args) or upstream(*args))
    assert get_possible_keys(lenient, lookup, states) == set(lookup)
    assert len(calls) == 1


def test_every_turn_of_the_test_stories(trained_agent, monkeypatch):
    """The trained model's rules: same keys at every turn, and the same predictions."""
    domain = trained_agent.domain
    (trained,) = [
        node._component
        for node in trained_agent.processor.graph_runner._instantiated_nodes.values()
        if isinstance(node._component, RulePolicy)
    ]
    assert type(trained) is IndexedRulePolicy
    assert len(trained.lookup[RULES]) > 100 and trained.lookup[RULES_FOR_LOOP_UNHAPPY_PATH]
    turns = story_turns(trained_agent)
    assert len(turns) > 150
    for tracker in turns:
        for use_text in (True, False):
            states = trained._prediction_states(tracker, domain, use_text)
            for table in (RULES, RULES_FOR_LOOP_UNHAPPY_PATH):
                lookup = trained.lookup[table]
                assert get_possible_keys(trained, lookup, states) == upstream(trained, lookup, states), tracker.sender_id
        actual = trained.predict_action_probabilities(tracker, domain)
        monkeypatch.setattr(IndexedRulePolicy, "_get_possible_keys", upstream)
        expected = trained.predict_action_probabilities(tracker, domain)
        monkeypatch.undo()
        assert (actual.probabilities, actual.events, actual.hide_rule_turn) == (
            expected.probabilities,
            expected.events,
            expected.hide_rule_turn,
        )


@pytest.mark.parametrize("number", range(len(rule_policy.UPSTREAM)))
def test_a_changed_upstream_method_refuses_to_build(monkeypatch, tmp_path, number):
    checked = rule_policy.UPSTREAM[number]
    changed = tuple(Upstream(entry.path, "0" * 64) if entry is checked else entry for entry in rule_policy.UPSTREAM)
    monkeypatch.setattr(rule_policy, "UPSTREAM", changed)
    with pytest.raises(ReplacementCheckError) as error:
        build(tmp_path)
    message = str(error.value)
    assert f"{checked.path} (re-implemented by policies/rule_policy.py)" in message
    assert message.count("\n- ") == 1  # only the changed one is named


def test_config_names_the_policy():
    policies = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))["policies"]
    assert [entry["name"] for entry in policies if "Rule" in entry["name"]] == ["policies.rule_policy.IndexedRulePolicy"]

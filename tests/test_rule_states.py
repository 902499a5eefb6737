"""An ``IndexedRulePolicy`` prediction builds the conversation's states once and predicts as
upstream's ``RulePolicy._predict``.

On the trained model, at every turn of the test stories: the same prediction (action
probabilities, events, hidden rule turn, the rule used) with and without the kept states,
at most one build per prediction — one fewer than upstream right after a user message —
and copies that do not share their parts. Outside a prediction, states are built as
upstream builds them. The trained policy's featurizer is the one that keeps them.
"""

from __future__ import annotations

from typing import List

import pytest
from rasa.core.featurizers.tracker_featurizers import TrackerFeaturizer
from rasa.core.policies.rule_policy import RulePolicy
from rasa.shared.core.constants import ACTION_LISTEN_NAME, USER
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT

from policies.rule_policy import IndexedRulePolicy, StatesOnceTrackerFeaturizer
from tests.trained_model import story_turns

upstream_predict = RulePolicy._predict


@pytest.fixture
def builds(monkeypatch) -> List[int]:
    """Upstream's state builds, one entry (the tracker's event count) per build."""
    calls: List[int] = []
    upstream = TrackerFeaturizer._create_states

    def counted(tracker, domain, *options, **named):
        calls.append(len(tracker.events))
        return upstream(tracker, domain, *options, **named)

    monkeypatch.setattr(TrackerFeaturizer, "_create_states", staticmethod(counted))
    return calls


@pytest.fixture
def policy(trained_agent) -> IndexedRulePolicy:
    (found,) = [
        node._component
        for node in trained_agent.processor.graph_runner._instantiated_nodes.values()
        if isinstance(node._component, RulePolicy)
    ]
    return found


def test_the_trained_policy_keeps_its_states(policy):
    # Persisted and loaded with the model: the type name is in its featurizer's file.
    assert type(policy) is IndexedRulePolicy
    assert type(policy.featurizer) is StatesOnceTrackerFeaturizer
    assert policy.featurizer.max_history is None


def test_every_turn_of_the_test_stories(trained_agent, policy, builds):
    domain = trained_agent.domain
    saved = 0
    for tracker in story_turns(trained_agent):
        before = len(builds)
        expected = upstream_predict(policy, tracker, domain)
        upstream_builds = len(builds) - before
        before = len(builds)
        actual = policy._predict(tracker, domain)
        ours_builds = len(builds) - before

        (ours, source), (theirs, their_source) = actual, expected
        assert (ours.probabilities, ours.events, ours.hide_rule_turn, source) == (
            theirs.probabilities,
            theirs.events,
            theirs.hide_rule_turn,
            their_source,
        )
        assert ours_builds == min(upstream_builds, 1), tracker.sender_id
        saved += upstream_builds - ours_builds
        if upstream_builds == 2:  # text first, then intent: right after a user message
            assert tracker.latest_action_name == ACTION_LISTEN_NAME
    assert saved > 30, saved


def built_twice_by_upstream(agent, policy) -> List[DialogueStateTracker]:
    """Turns after which upstream's prediction builds the states twice."""
    turns = []
    for turn in story_turns(agent):
        calls = []
        original = policy._prediction_states
        policy._prediction_states = lambda *args, calls=calls, original=original, **named: calls.append(1) or original(*args, **named)
        try:
            upstream_predict(policy, turn, agent.domain)
        finally:
            del policy._prediction_states
        if len(calls) == 2:
            turns.append(turn)
    return turns


def test_each_request_gets_its_own_copy(trained_agent, policy, builds, monkeypatch):
    tracker = built_twice_by_upstream(trained_agent, policy)[3]
    builds.clear()
    seen = []

    def look(self, tracker, domain, use_text_for_last_user_input=False, rule_only_data=None):
        for _ in range(2):
            states = self.featurizer._create_states(tracker, domain)
            assert states[-1][USER][INTENT]  # no earlier request's edit shows
            states[-1][USER].pop(INTENT)  # as the featurizer edits them
            seen.append(states)
        return states

    monkeypatch.setattr(RulePolicy, "_prediction_states", look)
    policy._predict(tracker, trained_agent.domain)
    assert len(seen) == 4 and len(builds) == 1
    assert all(
        a is not b and all(a[part] is not b[part] for part in a) for first, second in zip(seen, seen[1:]) for a, b in zip(first, second)
    )
    fresh = TrackerFeaturizer._create_states(tracker, trained_agent.domain)
    assert [set(state) for state in fresh] == [set(state) for state in seen[0]]


def test_outside_a_prediction_states_are_built_every_time(trained_agent, policy, builds):
    tracker = story_turns(trained_agent)[5]
    first = policy.featurizer._create_states(tracker, trained_agent.domain)
    second = policy.featurizer._create_states(tracker, trained_agent.domain)
    assert len(builds) == 2 and first == second

"""When the action server cannot be reached, say so and offer a person; never go silent.

Rasa 3.6 runs a custom action (or a form whose validation is a custom action) through
``RemoteAction``; when the action server is down the request fails, the processor logs
the exception, records ``ActionExecuted(<action>)`` and drops the action's events
(``MessageProcessor._run_action``). The merchant would get no answer at all, and a
form would stay where it was without asking anything.

This policy recognises exactly that trace: the newest event of the tracker is
``ActionExecuted`` of one of the domain's custom actions or forms, with nothing after
it. A custom action that ran never leaves that trace in this assistant: every action
in ``actions/`` sends a message or sets a slot, and a form that ran always sets
``requested_slot`` or deactivates (``tests/test_action_server_down.py`` checks every
action of the domain and the form paths). It then predicts

1. ``utter_cannot_check_now`` — "I cannot check this right now", with a button to ask
   for a person, in the merchant's language;
2. ``action_listen`` right after it, so an active form is not run again (and fail
   again) in a loop until Rasa's circuit breaker stops it.

Nothing else changes: the form stays active at the step it was on, so once the action
server is back the merchant's next answer continues the checks where they were.

Both predictions do not depend on user input (``is_no_user_prediction``), like
``RulePolicy``'s loop predictions, and the default priority 7 is above ``RulePolicy``'s 6.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Set, Text

from rasa.core.policies.policy import Policy, PolicyPrediction, SupportedData
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker

logger = logging.getLogger(__name__)

RESPONSE = "utter_cannot_check_now"


def custom_actions(domain: Domain) -> Set[Text]:
    """The domain's custom actions and forms: what runs on (or through) the action server."""
    return {name for name in domain.user_actions_and_forms if not name.startswith("utter_") and name not in domain.responses}


def failed_action(tracker: DialogueStateTracker, domain: Domain) -> Optional[Text]:
    """The custom action whose events were dropped by a failure, if that just happened."""
    if not tracker.events:
        return None
    latest = tracker.events[-1]
    if isinstance(latest, ActionExecuted) and latest.action_name in custom_actions(domain):
        return latest.action_name
    return None


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True)
class ActionServerDownPolicy(Policy):
    """Answers for a custom action that failed: a polite message, then listen."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Above RulePolicy (6), so its loop predictions do not win over ours."""
        return {"priority": 7}

    @staticmethod
    def supported_data() -> SupportedData:
        """Needs no training data at all."""
        return SupportedData.ML_DATA

    def __init__(
        self,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        featurizer: Any = None,
    ) -> None:
        """Keeps the config; no featurizer is used."""
        super().__init__(config, model_storage, resource, execution_context, featurizer)

    def train(
        self,
        training_trackers: List[TrackerWithCachedStates],
        domain: Domain,
        **kwargs: Any,
    ) -> Resource:
        """Nothing to learn; fails early if the domain lacks the response."""
        if RESPONSE not in domain.responses:
            raise ValueError(f"{self.__class__.__name__} needs the response '{RESPONSE}'")
        return self._resource

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: Optional[Dict[Text, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        """``utter_cannot_check_now`` after a failed custom action, then ``action_listen``."""
        probabilities = self._default_predictions(domain)
        failed = failed_action(tracker, domain)
        if failed:
            logger.warning(
                "custom action '%s' of conversation %s produced nothing (action server unreachable?): telling the merchant",
                failed,
                tracker.sender_id,
            )
            probabilities[domain.index_for_action(RESPONSE)] = 1.0
            return self._prediction(probabilities, is_no_user_prediction=True)
        if tracker.latest_action_name == RESPONSE:
            probabilities[domain.index_for_action(ACTION_LISTEN_NAME)] = 1.0
            return self._prediction(probabilities, is_no_user_prediction=True)
        return self._prediction(probabilities)

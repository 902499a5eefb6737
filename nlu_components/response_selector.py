"""A ResponseSelector that only runs its model when the message's intent needs it, and then
through its traced TensorFlow function directly (``nlu_components.model_inference``).

Rasa's ``ResponseSelector`` predicts on every message, but its answer is only read when
the intent is its retrieval intent (``faq`` → ``utter_faq``). py-spy put ~12 % of the
Rasa process's CPU per message in it (about half building the model input in
``_create_model_data``, half TensorFlow inference), spent mostly on diagnostics turns
that never use it. Measured on the messages of ``bench/conversations.yml`` (4 % FAQ),
one TensorFlow thread: 8.5 ms of 23.0 ms CPU per parse was the selector; gated, a parse
costs 14.6 ms. DIETClassifier runs earlier in the pipeline, so the intent is known when
the selector runs.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Text, Type

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.selectors.response_selector import ResponseSelector
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY
from rasa.shared.nlu.training_data.message import Message
from rasa.utils.tensorflow.models import RasaModel

from nlu_components.model_inference import OneBatchDIET2BOW, OneBatchDIET2DIET, check_upstream


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class IntentGatedResponseSelector(ResponseSelector):
    """``ResponseSelector`` that predicts only for messages of its retrieval intent.

    Training is Rasa's, unchanged. At prediction time a message whose current intent
    (set by an intent classifier earlier in the pipeline) is not the selector's
    ``retrieval_intent`` — or, when that option is unset, not one of the retrieval
    intents in the training data — is treated as if the model had no output: the
    message gets exactly the ``response_selector`` entry Rasa writes when its model
    cannot predict (``all_retrieval_intents`` plus the selector key with no
    ``intent_response_key`` and an empty ranking), so ``utter_<intent>``, the
    processor's ``full_retrieval_intent`` and ``rasa test nlu`` read it as usual.

    Its model is the upstream one with ``OneBatchInference``, so it refuses to be built
    (``ReplacementCheckError``) when upstream's ``run_inference`` is not the one that was
    checked.

    Use it in ``config.yml`` in place of ``ResponseSelector``, after the intent
    classifier, with the same options::

        - name: nlu_components.diet_classifier.OneBatchDIETClassifier
          ...
        - name: nlu_components.response_selector.IntentGatedResponseSelector
          retrieval_intent: faq
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Rasa's selector (same arguments), once upstream's source is checked."""
        check_upstream()
        super().__init__(*args, **kwargs)

    @staticmethod
    def model_class(use_text_as_label: bool) -> Type[RasaModel]:  # type: ignore[override]
        """Upstream's model for the option, with the one-batch inference."""
        return OneBatchDIET2DIET if use_text_as_label else OneBatchDIET2BOW

    def _predict(self, message: Message) -> Optional[Dict[Text, Any]]:
        # Returning None makes the parent's `process` write its own "no prediction"
        # shape, so the output stays exactly what Rasa produces without a model answer.
        if not self.predicts_for(message):
            return None
        return super()._predict(message)

    def predicts_for(self, message: Message) -> bool:
        """Return True when the message's current intent is one this selector answers."""
        intent_name = (message.get(INTENT) or {}).get(INTENT_NAME_KEY)
        if intent_name is None:
            return False
        if self.retrieval_intent:
            return intent_name == self.retrieval_intent
        # Without `retrieval_intent` the selector is trained on every retrieval intent.
        return intent_name in self.all_retrieval_intents

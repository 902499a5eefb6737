"""DIETClassifier whose one-message inference runs its traced TensorFlow function directly
(``nlu_components.model_inference``)."""

from __future__ import annotations

import warnings
from typing import Any, Type

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.diet_classifier import DIETClassifier
from rasa.utils.tensorflow.models import RasaModel

from nlu_components.model_inference import OneBatchDIET, check_upstream

# Rasa's recipe validator looks for `DIETClassifier` itself, not a subclass, and would warn
# that nothing in the pipeline reads entity examples and lookup tables; this subclass does
# what DIET does with them.
for _unread in ("entity examples", "lookup tables"):
    warnings.filterwarnings(
        "ignore", message=f"You have defined training data consisting of {_unread}, but your NLU configuration does not include"
    )


@DefaultV1Recipe.register(
    [
        DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER,
        DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR,
    ],
    is_trainable=True,
)
class OneBatchDIETClassifier(DIETClassifier):
    """Rasa's ``DIETClassifier`` (same options, training, weights and predictions) built on
    ``OneBatchDIET``. Use it in ``config.yml`` in place of ``DIETClassifier``.

    Refuses to be built (``ReplacementCheckError``) when upstream's ``run_inference`` is not
    the one ``OneBatchInference`` was checked against.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Rasa's classifier (same arguments), once upstream's source is checked."""
        check_upstream()
        super().__init__(*args, **kwargs)

    @staticmethod
    def model_class() -> Type[RasaModel]:
        """DIET with the one-batch inference."""
        return OneBatchDIET

"""One message's inference through Rasa's TensorFlow models without ``tf.function``'s
per-call lookup: ``OneBatchInference`` and the models DIET and the ResponseSelector build
with it (``nlu_components.diet_classifier``, ``nlu_components.response_selector``).

DIET and the ResponseSelector predict each message with ``RasaModel.run_inference``, which
builds a Keras data generator for the one example and calls ``_tf_predict_step``, a
``tf.function`` with a fixed input signature. On every call that ``tf.function``
canonicalises the batch's arrays against the signature, converts them and looks its one
concrete function up again. Measured in-process on the bench's messages: upstream's call
took 4.4 ms, running the concrete function on the same arrays 1.8 ms.

Here, once upstream has traced the function (on its first call, as before), an inference
that fits in one batch takes the batch as the generator would build it
(``RasaDataGenerator.prepare_batch`` over all examples), checks that the signature takes
each array as it is (dtype, rank, fixed sizes), and runs the traced concrete function on
them as tensors. The outputs go through upstream's own conversion. Anything else goes
upstream: a model that runs eagerly or has not been traced yet, no examples or several
batches, or an array of another dtype or shape than the signature's (upstream casts it or
raises its own error).

It re-implements upstream's ``RasaModel.run_inference`` for one batch, so the components
using these models refuse to be built (``ReplacementCheckError``) when that method's
source is not the one it was checked against (``UPSTREAM``, checked by ``check_upstream``).
"""

from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional, Text, Tuple, Union

import numpy as np
import tensorflow as tf
from keras.utils import tf_utils
from rasa.nlu.classifiers.diet_classifier import DIET
from rasa.nlu.selectors.response_selector import DIET2BOW, DIET2DIET
from rasa.shared.constants import DIAGNOSTIC_DATA
from rasa.utils.tensorflow.data_generator import RasaDataGenerator
from rasa.utils.tensorflow.model_data import RasaModelData
from rasa.utils.tensorflow.models import RasaModel

from rasa_server.replacements import Upstream, require_unchanged

# The method re-implemented below, as it was read: a changed upstream refuses to build.
UPSTREAM = (
    Upstream("rasa.utils.tensorflow.models.RasaModel.run_inference", "e628d03665d82d9df14e102b7b1757fc015b4caaec4fabcb6ee4b83125e296ac"),
)

Outputs = Dict[Text, Union[np.ndarray, Dict[Text, Any]]]


class _Traced:
    """A traced ``tf.function``'s one concrete function (its signature fixes it) and the
    arrays that signature takes, as numpy dtypes and shapes (``None``: any size)."""

    def __init__(self, function: Any) -> None:
        self.concrete = function.get_concrete_function()
        (specs,) = function.input_signature
        self.accepted: List[Tuple[np.dtype, Tuple[Optional[int], ...]]] = [
            (spec.dtype.as_numpy_dtype, tuple(spec.shape.as_list())) for spec in specs
        ]

    def tensors(self, batch: Tuple[Any, ...]) -> Optional[List[tf.Tensor]]:
        """The batch as the function's arguments; ``None`` if the signature does not take
        every array as it is (upstream then converts or rejects it)."""
        if len(batch) != len(self.accepted):
            return None
        for array, (dtype, shape) in zip(batch, self.accepted):
            if (
                not isinstance(array, np.ndarray)
                or array.dtype != dtype
                or array.ndim != len(shape)
                or any(size is not None and size != actual for size, actual in zip(shape, array.shape))
            ):
                return None
        return [tf.constant(array) for array in batch]


# Asking the tf.function for its concrete function goes through the lookup this module
# leaves out, so each is asked once.
_TRACED: "weakref.WeakKeyDictionary[Any, _Traced]" = weakref.WeakKeyDictionary()


def check_upstream() -> None:
    """Raise ``ReplacementCheckError`` unless upstream's ``run_inference`` is the one read."""
    require_unchanged("nlu_components/model_inference.py", UPSTREAM)


class OneBatchInference(RasaModel):
    """A Rasa TensorFlow model whose one-batch inference runs the traced concrete function
    (put it before the model class: ``class M(OneBatchInference, DIET)``)."""

    def run_inference(
        self,
        model_data: RasaModelData,
        batch_size: Union[int, List[int]] = 1,
        output_keys_expected: Optional[List[Text]] = None,
    ) -> Outputs:
        """The model's outputs for ``model_data``, as upstream's ``run_inference`` gives them."""
        examples = model_data.number_of_examples()
        function = getattr(self, "_tf_predict_step", None)
        if (
            self._run_eagerly
            or function is None
            or not self.prepared_for_prediction
            or not isinstance(batch_size, int)
            or not 0 < examples <= batch_size
        ):
            return super().run_inference(model_data, batch_size, output_keys_expected)
        traced = _TRACED.get(function)
        if traced is None:
            traced = _TRACED[function] = _Traced(function)
        tensors = traced.tensors(RasaDataGenerator.prepare_batch(model_data.data, 0, batch_size))
        if tensors is None:
            return super().run_inference(model_data, batch_size, output_keys_expected)
        self._training = False
        outputs = tf_utils.sync_to_numpy_or_python_type(traced.concrete._call_flat(tensors, traced.concrete.captured_inputs))
        if DIAGNOSTIC_DATA in outputs:
            outputs[DIAGNOSTIC_DATA] = self._empty_lists_to_none_in_dict(outputs[DIAGNOSTIC_DATA])
        if output_keys_expected:
            outputs = {key: value for key, value in outputs.items() if key in output_keys_expected}
        return outputs


class OneBatchDIET(OneBatchInference, DIET):
    """DIETClassifier's model with ``OneBatchInference``."""


class OneBatchDIET2BOW(OneBatchInference, DIET2BOW):
    """The ResponseSelector's model (responses as labels) with ``OneBatchInference``."""


class OneBatchDIET2DIET(OneBatchInference, DIET2DIET):
    """The ResponseSelector's model (response texts as labels) with ``OneBatchInference``."""

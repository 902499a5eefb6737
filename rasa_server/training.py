"""Training fixes: a forced training writes no cache; features are fingerprinted and
batches converted faster.

A forced training (``--force``, as the Makefile and the bench train) never reads Rasa's
training cache: ``GraphTrainer.train`` skips the fingerprint run and retrains every node.
It still runs ``TrainingHook`` after every node, which fingerprints the node's whole output
(every training message with its tokens and feature matrices, again after each featurizer)
so that a later, unforced training could restore it. py-spy: ~25 s of a ~240 s training.
When the training is forced, this module leaves that hook out; Rasa's logging hook stays.
An unforced ``python -m rasa_server train`` is upstream's, cache and all.

The ResponseSelector picks its examples into a new ``TrainingData``, which drops duplicates
by each message's fingerprint; a featurized message's fingerprint writes every entry of its
sparse matrices as text (``util.sparse_matrix_to_string``), formatting numpy scalars one
by one (py-spy: ~16 s for the FAQ examples). ``sparse_matrix_text`` writes the same text
from plain Python numbers.

Each training batch of DIET and the ResponseSelector turns its examples' sparse matrices
into (indices, values, shape) arrays in ``RasaDataGenerator._scipy_matrix_to_values``,
three numpy stacks per example, every batch of every epoch (py-spy: ~20 s of CPU).
``batch_values`` builds the same arrays from one concatenation per field.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Dict, Iterator, List, Sequence

import numpy as np
import scipy.sparse
from rasa.engine.graph import ExecutionContext, GraphNodeHook
from rasa.engine.training import graph_trainer
from rasa.shared.nlu.training_data import util
from rasa.utils.tensorflow.data_generator import RasaDataGenerator

_UPSTREAM_TRAIN = graph_trainer.GraphTrainer.train
_UPSTREAM_TO_VALUES = RasaDataGenerator._scipy_matrix_to_values
_UPSTREAM_TO_STRING = util.sparse_matrix_to_string
# Value types whose Python numbers print as numpy prints its scalars.
_PLAIN_DTYPES = {np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.int32)}


class NoOutputCache(GraphNodeHook):
    """Stands in for ``TrainingHook`` in a forced training: caches nothing."""

    def __init__(self, **_: Any) -> None:
        """Takes ``TrainingHook``'s arguments (cache, model storage, schema) and ignores them."""

    def on_before_node(
        self, node_name: str, execution_context: ExecutionContext, config: Dict[str, Any], received_inputs: Dict[str, Any]
    ) -> Dict:
        """No fingerprint key: nothing will be cached."""
        return {}

    def on_after_node(
        self, node_name: str, execution_context: ExecutionContext, config: Dict[str, Any], output: Any, input_hook_data: Dict
    ) -> None:
        """The output is not fingerprinted nor cached."""


@contextlib.contextmanager
def _without_output_cache() -> Iterator[None]:
    upstream = graph_trainer.TrainingHook
    graph_trainer.TrainingHook = NoOutputCache
    try:
        yield
    finally:
        graph_trainer.TrainingHook = upstream


@functools.wraps(_UPSTREAM_TRAIN)
def train(self: graph_trainer.GraphTrainer, *args: Any, force_retraining: bool = False, **kwargs: Any) -> Any:
    """``GraphTrainer.train``; a forced training runs without the output cache."""
    if not force_retraining:
        return _UPSTREAM_TRAIN(self, *args, **kwargs)
    with _without_output_cache():
        return _UPSTREAM_TRAIN(self, *args, force_retraining=True, **kwargs)


def batch_values(array_of_sparse: Sequence[Any]) -> List[np.ndarray]:
    """``RasaDataGenerator._scipy_matrix_to_values``: a batch of per-example sparse
    matrices as [indices (example, row, column) int64, values float32, shape int64].
    Four-dimensional (dialogue) arrays and empty batches go to upstream's."""
    if getattr(array_of_sparse, "number_of_dimensions", 3) == 4 or len(array_of_sparse) == 0:
        return _UPSTREAM_TO_VALUES(array_of_sparse)
    matrices = [x if isinstance(x, scipy.sparse.coo_matrix) else x.tocoo() for x in array_of_sparse]
    examples = np.repeat(np.arange(len(matrices)), [len(x.row) for x in matrices])
    indices = np.stack((examples, np.concatenate([x.row for x in matrices]), np.concatenate([x.col for x in matrices])), axis=1)
    values = np.concatenate([x.data for x in matrices])
    shape = (len(matrices), max(x.shape[0] for x in matrices), matrices[0].shape[-1])
    return [indices.astype(np.int64), values.astype(np.float32), np.array(shape, dtype=np.int64)]


def sparse_matrix_text(matrix: scipy.sparse.spmatrix) -> str:
    """``util.sparse_matrix_to_string``: a line ``"  (row, col)\tvalue"`` per stored entry.
    Values of other types than float64, int64 and int32 go to upstream's."""
    coo = matrix.tocoo()
    if coo.data.dtype not in _PLAIN_DTYPES:
        return _UPSTREAM_TO_STRING(matrix)
    return "\n".join(["  (%d, %d)\t%s" % entry for entry in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist())])


def install() -> None:
    """Apply the fixes to this process's training."""
    graph_trainer.GraphTrainer.train = train
    util.sparse_matrix_to_string = sparse_matrix_text
    RasaDataGenerator._scipy_matrix_to_values = staticmethod(batch_values)

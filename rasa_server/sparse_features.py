"""Join two featurizers' sparse features without ``scipy.sparse.hstack``.

DIET reads a message's features through ``Message.get_sparse_features``, which joins the
regex, lexical and two count-vector featurizers' matrices pairwise with
``Features._combine_sparse_features``: ``scipy.sparse.hstack`` → ``bmat``, a general
block-matrix builder. For two COO blocks it only concatenates their entries, but its
checks cost ~0.2 ms per join (four to five joins a message; py-spy: ~6 % of a message's
CPU). Building the COO matrix from the concatenated entries directly takes ~0.05 ms and
gives the same matrix: same entries in the same order, same dtype, same shape.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from rasa.shared.nlu.training_data.features import Features

_UPSTREAM = Features._combine_sparse_features


def hstack_coo(left: scipy.sparse.coo_matrix, right: scipy.sparse.coo_matrix) -> scipy.sparse.coo_matrix:
    """``scipy.sparse.hstack([left, right])`` for two COO matrices with as many rows."""
    return scipy.sparse.coo_matrix(
        (
            np.concatenate((left.data, right.data)),
            (np.concatenate((left.row, right.row)), np.concatenate((left.col, right.col + left.shape[1]))),
        ),
        shape=(left.shape[0], left.shape[1] + right.shape[1]),
    )


def combine_sparse_features(self: Features, additional_features: Features) -> None:
    """``Features._combine_sparse_features`` with the COO join above when both are COO
    matrices with as many rows; anything else goes to upstream's."""
    mine, theirs = self.features, additional_features.features
    if type(mine) is not scipy.sparse.coo_matrix or type(theirs) is not scipy.sparse.coo_matrix or mine.shape[0] != theirs.shape[0]:
        _UPSTREAM(self, additional_features)  # other formats, and upstream's error
        return
    self.features = hstack_coo(mine, theirs)
    self._cached_fingerprint = None


def install() -> None:
    """Use the COO join in every ``Features`` of this process."""
    Features._combine_sparse_features = combine_sparse_features

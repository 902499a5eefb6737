"""The COO join gives exactly what ``scipy.sparse.hstack`` gives, inside Rasa's Features."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.message import Message

from rasa_server import sparse_features
from rasa_server.sparse_features import combine_sparse_features, hstack_coo
from tests.harness.examples import examples


@st.composite
def coo_pairs(draw):
    """Two COO matrices with as many rows: random entries (duplicates and explicit zeros
    included), random value dtypes."""
    rows = draw(st.integers(1, 6))

    def matrix(columns: int) -> scipy.sparse.coo_matrix:
        count = draw(st.integers(0, 12))
        dtype = draw(st.sampled_from([np.float64, np.float32, np.int64]))
        entries = st.tuples(st.integers(0, rows - 1), st.integers(0, columns - 1), st.integers(-3, 3))
        cells = draw(st.lists(entries, min_size=count, max_size=count))
        return scipy.sparse.coo_matrix(
            (
                np.array([v for _, _, v in cells], dtype=dtype),
                (np.array([r for r, _, _ in cells], dtype=np.int32), np.array([c for _, c, _ in cells], dtype=np.int32)),
            ),
            shape=(rows, columns),
        )

    return matrix(draw(st.integers(1, 9000))), matrix(draw(st.integers(1, 9000)))


def same_matrix(ours: scipy.sparse.coo_matrix, theirs: scipy.sparse.spmatrix) -> None:
    assert type(ours) is type(theirs) is scipy.sparse.coo_matrix
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    for field in ("row", "col", "data"):
        mine, upstream = getattr(ours, field), getattr(theirs, field)
        assert mine.dtype == upstream.dtype, field
        assert np.array_equal(mine, upstream), field


@settings(max_examples=examples(200), deadline=None)
@given(coo_pairs())
def test_hstack_coo_is_scipy_hstack(pair):
    left, right = pair
    same_matrix(hstack_coo(left, right), scipy.sparse.hstack([left, right]))


def features(matrix, origin: str) -> Features:
    return Features(matrix, "sequence", "text", origin)


def test_features_join_like_upstream_and_forget_their_fingerprint():
    left = scipy.sparse.coo_matrix(np.array([[0, 1.0], [2.0, 0]]))
    right = scipy.sparse.coo_matrix(np.array([[3.0], [0]]))
    ours, theirs = features(left, "a"), features(left, "a")
    before = ours.fingerprint()
    combine_sparse_features(ours, features(right, "b"))
    sparse_features._UPSTREAM(theirs, features(right, "b"))
    same_matrix(ours.features, theirs.features)
    assert ours.fingerprint() == theirs.fingerprint() != before


def test_other_formats_and_mismatched_rows_go_to_upstream():
    csr = features(scipy.sparse.csr_matrix(np.eye(2)), "a")
    combine_sparse_features(csr, features(scipy.sparse.coo_matrix(np.eye(2)), "b"))
    assert csr.features.shape == (2, 4)
    assert np.array_equal(csr.features.toarray(), np.hstack([np.eye(2), np.eye(2)]))
    with pytest.raises(ValueError, match="sequence dimensions do not match: 2 != 3"):
        combine_sparse_features(features(scipy.sparse.coo_matrix(np.eye(2)), "a"), features(scipy.sparse.coo_matrix(np.eye(3)), "b"))


def test_installed_a_message_combines_its_featurizers_with_the_coo_join(monkeypatch):
    monkeypatch.setattr(Features, "_combine_sparse_features", sparse_features._UPSTREAM)
    parts = [
        scipy.sparse.coo_matrix(np.array([[1.0, 0], [0, 2.0]])),
        scipy.sparse.coo_matrix(np.array([[0, 0, 5.0], [7.0, 0, 0]])),
        scipy.sparse.coo_matrix(np.array([[0.5], [0]])),
    ]

    def combined():
        message = Message(data={"text": "pos 1000"}, features=[features(part, f"f{i}") for i, part in enumerate(parts)])
        sequence, _ = message.get_sparse_features("text")
        return sequence.features

    upstream = combined()
    sparse_features.install()
    assert Features._combine_sparse_features is combine_sparse_features
    same_matrix(combined(), upstream)

"""Count-vectors features counted directly are scikit-learn's, entry for entry.

Featurizers are trained the way Rasa trains them (words; character n-grams inside word
boundaries; binary counts; Chinese and English), then hypothesis draws token lists — known
words, unknown text, repeats, empty messages — and both implementations featurize them:
same matrices (shape, entries, order, dtypes) or the same ``None``. A vectorizer that is
not a plain fitted ``CountVectorizer`` goes upstream.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings, strategies as st
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import (
    CountVectorsFeaturizer,
)
from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from sklearn.feature_extraction.text import TfidfVectorizer

from rasa_server import count_vectors
from rasa_server.count_vectors import create_features

upstream = count_vectors._UPSTREAM_CREATE_FEATURES

EXAMPLES = [("what does error 1000 mean", "ask_meaning"), ("is it a hardware fault", "ask_is_hardware"),
            ("pos 机 报 1000 是 什么 意思", "ask_meaning"), ("still 1000 after the update", "deny"),
            ("Hello hello HELLO", "greet"), ("商米 P2 还是 不行", "deny")]
WORDS = sorted({word for text, _ in EXAMPLES for word in text.split()})

CONFIGS = {
    "words": {},
    "char_wb": {"analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
    "binary": {"analyzer": "char_wb", "min_ngram": 2, "max_ngram": 4},
}


@pytest.fixture(scope="module")
def featurizers(tmp_path_factory) -> Dict[str, CountVectorsFeaturizer]:
    """One featurizer per configuration, trained on the examples as Rasa trains it."""
    trained = {}
    for name, config in CONFIGS.items():
        tokenizer = WhitespaceTokenizer(WhitespaceTokenizer.get_default_config())
        data = TrainingData([Message(data={"text": text, "intent": intent})
                             for text, intent in EXAMPLES])
        tokenizer.process_training_data(data)
        featurizer = CountVectorsFeaturizer.create(
            {**CountVectorsFeaturizer.get_default_config(), **config},
            LocalModelStorage(tmp_path_factory.mktemp(name)), Resource(name),
            ExecutionContext(GraphSchema({}), name))
        featurizer.train(data)
        if name == "binary":
            # Rasa never asks for binary counts, but a vectorizer may be set so.
            for vectorizer in featurizer.vectorizers.values():
                vectorizer.binary = True
        trained[name] = featurizer
    return trained


def assert_same(expected: List[Any], actual: List[Any]) -> None:
    assert len(expected) == len(actual)
    for left, right in zip(expected, actual):
        if left is None:
            assert right is None
            continue
        assert isinstance(right, scipy.sparse.coo_matrix) and left.shape == right.shape
        for field in ("data", "row", "col"):
            ours, theirs = getattr(right, field), getattr(left, field)
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), field


tokens = st.lists(st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=6)),
                  max_size=8)


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(tokens, min_size=1, max_size=4),
       name=st.sampled_from(sorted(CONFIGS)))
def test_same_features_as_scikit_learn(featurizers, messages, name):
    featurizer = featurizers[name]
    for attribute in ("text", "intent"):  # with and without sentence features
        expected = upstream(featurizer, attribute, messages)
        actual = create_features(featurizer, attribute, messages)
        assert_same(expected[0], actual[0])
        assert_same(expected[1], actual[1])


def test_counts_and_order(featurizers):
    featurizer = featurizers["words"]
    sequence, sentence = create_features(featurizer, "text", [["hello", "mean", "Hello"]])
    vocabulary = featurizer.vectorizers["text"].vocabulary_
    hello, mean = vocabulary["hello"], vocabulary["mean"]
    assert sequence[0].toarray()[0, hello] == 1 and sequence[0].toarray()[1, mean] == 1
    assert list(sentence[0].col) == sorted([hello, mean]) and sentence[0].shape[0] == 1
    assert sentence[0].toarray()[0, hello] == 2
    _, binary = create_features(featurizers["binary"], "text", [["hello", "hello"]])
    assert set(binary[0].data) == {1}
    assert_same(upstream(featurizers["binary"], "text", [["hello", "hello"]])[1], binary)


def test_other_vectorizers_go_upstream(featurizers, monkeypatch):
    featurizer = featurizers["words"]
    tfidf = TfidfVectorizer().fit([text for text, _ in EXAMPLES])
    monkeypatch.setitem(featurizer.vectorizers, "text", tfidf)
    messages = [["what", "does", "error", "1000", "mean"]]
    expected = upstream(featurizer, "text", messages)
    actual = create_features(featurizer, "text", messages)
    assert actual[0][0].dtype == np.float64  # tf-idf weights, not counts
    assert_same(expected[0], actual[0])
    assert create_features(featurizer, "missing", messages) == ([None], [None])


def test_installed(monkeypatch):
    monkeypatch.setattr(CountVectorsFeaturizer, "_create_features", upstream)
    count_vectors.install()
    assert CountVectorsFeaturizer._create_features is create_features

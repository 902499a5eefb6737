"""``DirectCountVectorsFeaturizer``'s features are Rasa's ``CountVectorsFeaturizer``'s
(scikit-learn's counts), entry for entry.

Featurizers are trained the way Rasa trains them (words; character n-grams inside word
boundaries; binary counts; Chinese and English), then hypothesis draws token lists — known
words, unknown text, repeats, empty messages — and both implementations featurize them:
same matrices (shape, entries, order, dtypes) or the same ``None``. A vectorizer that is
not a plain fitted ``CountVectorizer`` goes upstream; a changed upstream method refuses to
build; ``config.yml`` names the featurizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import scipy.sparse
import yaml
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

from nlu_components import count_vectors
from nlu_components.count_vectors import DirectCountVectorsFeaturizer
from rasa_server.replacements import ReplacementCheckError, Upstream
from tests.harness.examples import examples

upstream = CountVectorsFeaturizer._create_features
ROOT = Path(__file__).resolve().parent.parent


def create_features(featurizer: DirectCountVectorsFeaturizer, attribute: str, messages: List[List[str]]) -> Any:
    """The featurizer's own features (``DirectCountVectorsFeaturizer._create_features``)."""
    return featurizer._create_features(attribute, messages)


EXAMPLES = [
    ("what does error 1000 mean", "ask_meaning"),
    ("is it a hardware fault", "ask_is_hardware"),
    ("pos 机 报 1000 是 什么 意思", "ask_meaning"),
    ("still 1000 after the update", "deny"),
    ("Hello hello HELLO", "greet"),
    ("商米 P2 还是 不行", "deny"),
]
WORDS = sorted({word for text, _ in EXAMPLES for word in text.split()})

CONFIGS = {
    "words": {},
    "char_wb": {"analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
    "binary": {"analyzer": "char_wb", "min_ngram": 2, "max_ngram": 4},
}


@pytest.fixture(scope="module")
def featurizers(tmp_path_factory) -> Dict[str, DirectCountVectorsFeaturizer]:
    """One featurizer per configuration, trained on the examples as Rasa trains it."""
    trained = {}
    for name, config in CONFIGS.items():
        tokenizer = WhitespaceTokenizer(WhitespaceTokenizer.get_default_config())
        data = TrainingData([Message(data={"text": text, "intent": intent}) for text, intent in EXAMPLES])
        tokenizer.process_training_data(data)
        featurizer = DirectCountVectorsFeaturizer.create(
            {**DirectCountVectorsFeaturizer.get_default_config(), **config},
            LocalModelStorage(tmp_path_factory.mktemp(name)),
            Resource(name),
            ExecutionContext(GraphSchema({}), name),
        )
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


tokens = st.lists(st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=6)), max_size=8)


@settings(max_examples=examples(200), deadline=None)
@given(messages=st.lists(tokens, min_size=1, max_size=4), name=st.sampled_from(sorted(CONFIGS)))
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


def test_a_changed_upstream_method_refuses_to_build(monkeypatch, tmp_path):
    (checked,) = count_vectors.UPSTREAM
    monkeypatch.setattr(count_vectors, "UPSTREAM", (Upstream(checked.path, "0" * 64),))
    with pytest.raises(ReplacementCheckError) as error:
        DirectCountVectorsFeaturizer.create(
            DirectCountVectorsFeaturizer.get_default_config(),
            LocalModelStorage(tmp_path),
            Resource("cvf"),
            ExecutionContext(GraphSchema({}), "cvf"),
        )
    message = str(error.value)
    assert f"{checked.path} (re-implemented by nlu_components/count_vectors.py)" in message
    assert f"its source's SHA-256 is {checked.sha256}, expected {'0' * 64}" in message


def test_config_names_the_featurizer_for_both_count_vectors():
    pipeline = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))["pipeline"]
    names = [step["name"] for step in pipeline if "CountVectors" in step["name"]]
    assert names == ["nlu_components.count_vectors.DirectCountVectorsFeaturizer"] * 2

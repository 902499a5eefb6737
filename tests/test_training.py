"""Training fixes: a forced training caches nothing yet trains the same model, an unforced
one keeps Rasa's cache; feature fingerprints' text and training batches' sparse arrays are
exactly upstream's."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from rasa.core.agent import Agent
from rasa.engine.training import graph_trainer
from rasa.engine.training.hooks import TrainingHook
from rasa.model_training import train
from rasa.shared.nlu.training_data import util
from rasa.shared.nlu.training_data.features import Features
from rasa.utils.tensorflow.data_generator import RasaDataGenerator
from rasa.utils.tensorflow.model_data import FeatureArray, RasaModelData

from rasa_server import training
from tests.harness.examples import examples

# A small bot whose training needs no TensorFlow: the trainer and its hooks are under test.
FILES = {
    "config.yml": """
        recipe: default.v1
        assistant_id: training-test
        language: en
        pipeline:
          - name: WhitespaceTokenizer
          - name: CountVectorsFeaturizer
          - name: LogisticRegressionClassifier
            random_state: 7
        policies:
          - name: RulePolicy
        """,
    "domain.yml": """
        version: "3.1"
        intents: [greet, goodbye]
        responses:
          utter_greet: [{text: "Hello"}]
          utter_goodbye: [{text: "Bye"}]
        """,
    "data/nlu.yml": """
        version: "3.1"
        nlu:
          - intent: greet
            examples: |
              - hello
              - hi there
              - good morning
              - hey
          - intent: goodbye
            examples: |
              - bye
              - see you later
              - good night
              - goodbye for now
        """,
    "data/rules.yml": """
        version: "3.1"
        rules:
          - rule: greet
            steps: [{intent: greet}, {action: utter_greet}]
          - rule: goodbye
            steps: [{intent: goodbye}, {action: utter_goodbye}]
        """,
}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    monkeypatch.chdir(tmp_path)
    # Whatever a test installs is undone afterwards.
    monkeypatch.setattr(graph_trainer.GraphTrainer, "train", graph_trainer.GraphTrainer.train)
    monkeypatch.setattr(RasaDataGenerator, "_scipy_matrix_to_values", RasaDataGenerator._scipy_matrix_to_values)
    monkeypatch.setattr(util, "sparse_matrix_to_string", util.sparse_matrix_to_string)
    return tmp_path


def train_into(project: Path, name: str, force: bool, monkeypatch) -> Path:
    """Train the small bot with its own cache folder; return the model's path."""
    monkeypatch.setenv("RASA_CACHE_DIRECTORY", str(project / f"cache-{name}"))
    result = train("domain.yml", "config.yml", ["data"], output=str(project / "models"), force_training=force, fixed_model_name=name)
    assert result.code == 0
    return Path(result.model)


def cached_entries(project: Path, name: str) -> int:
    with sqlite3.connect(project / f"cache-{name}" / "cache.db") as db:
        return db.execute("SELECT count(*) FROM cache_entry").fetchone()[0]


async def parses(model: Path) -> List[Dict]:
    agent = Agent.load(str(model))
    found = []
    for text in ["hello", "bye", "good morning to you", "see you"]:
        parsed = await agent.parse_message(text)
        found.append({"intent": parsed["intent"], "ranking": parsed["intent_ranking"]})
    return found


@pytest.mark.process  # trains a model (tests/harness/fixtures.py)
async def test_a_forced_training_caches_nothing_and_trains_the_same_model(project, monkeypatch):
    upstream = train_into(project, "upstream", True, monkeypatch)
    assert cached_entries(project, "upstream") > 0  # what the fix leaves out
    training.install()
    ours = train_into(project, "ours", True, monkeypatch)
    assert cached_entries(project, "ours") == 0
    assert graph_trainer.TrainingHook is TrainingHook  # put back after the training
    assert await parses(ours) == await parses(upstream)


@pytest.mark.process  # trains a model (tests/harness/fixtures.py)
def test_an_unforced_training_keeps_rasas_cache(project, monkeypatch):
    training.install()
    train_into(project, "unforced", False, monkeypatch)
    assert cached_entries(project, "unforced") > 0


@pytest.mark.process  # trains a model (tests/harness/fixtures.py)
def test_the_cache_hook_is_put_back_when_training_fails(project, monkeypatch):
    training.install()
    (project / "config.yml").write_text(FILES["config.yml"].replace("RulePolicy", "NoSuchPolicy"))
    with pytest.raises(Exception):  # noqa: B017 - whatever Rasa raises; the hook is the point
        train_into(project, "broken", True, monkeypatch)
    assert graph_trainer.TrainingHook is TrainingHook


@st.composite
def sparse_batches(draw):
    """A batch of per-example sparse matrices with one feature width: random rows, entries
    (explicit zeros and duplicates included), COO or CSR."""
    width = draw(st.integers(1, 9000))
    batch = []
    for _ in range(draw(st.integers(1, 6))):
        rows = draw(st.integers(1, 7))
        cells = draw(st.lists(st.tuples(st.integers(0, rows - 1), st.integers(0, width - 1), st.floats(-3, 3, width=32)), max_size=15))
        matrix = scipy.sparse.coo_matrix(
            (
                np.array([v for _, _, v in cells], dtype=np.float64),
                (np.array([r for r, _, _ in cells], dtype=np.int32), np.array([c for _, c, _ in cells], dtype=np.int32)),
            ),
            shape=(rows, width),
        )
        batch.append(matrix)
    if draw(st.booleans()):  # upstream converts the whole batch when the first is not COO
        batch = [matrix.tocsr() for matrix in batch]
    return FeatureArray(np.array(batch + [None], dtype=object)[:-1], number_of_dimensions=3)


def same_arrays(ours: List[np.ndarray], upstream: List[np.ndarray]) -> None:
    assert len(ours) == len(upstream) == 3
    for mine, theirs in zip(ours, upstream):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
        assert np.array_equal(mine, theirs)


@settings(max_examples=examples(200), deadline=None)
@given(sparse_batches())
def test_batch_values_are_upstreams(batch):
    same_arrays(training.batch_values(batch), training._UPSTREAM_TO_VALUES(batch))


def test_installed_a_training_batch_is_built_with_batch_values(project):
    matrices = [scipy.sparse.coo_matrix(np.array([[0, 1.5, 0], [2.0, 0, 0]])), scipy.sparse.coo_matrix(np.array([[0, 0, 4.0]]))]
    data = RasaModelData(
        data={"text": {"sequence": [FeatureArray(np.array(matrices + [None], dtype=object)[:-1], number_of_dimensions=3)]}}
    )
    upstream = RasaDataGenerator.prepare_batch(data.data, 0, 2)
    training.install()
    ours = RasaDataGenerator.prepare_batch(data.data, 0, 2)
    same_arrays(list(ours), list(upstream))
    assert ours[0].tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 2]]


@st.composite
def sparse_matrices(draw):
    """A sparse matrix of any value type Rasa's featurizers produce (and float32), with
    random entries: duplicates, explicit zeros, NaN, infinities, extremes."""
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.int32]))
    values = st.floats(width=32 if dtype == np.float32 else 64) if dtype in (np.float64, np.float32) else st.integers(-(2**31), 2**31 - 1)
    rows, columns = draw(st.integers(1, 8)), draw(st.integers(1, 9000))
    cells = draw(st.lists(st.tuples(st.integers(0, rows - 1), st.integers(0, columns - 1), values), max_size=20))
    matrix = scipy.sparse.coo_matrix(
        (
            np.array([v for _, _, v in cells], dtype=dtype),
            (np.array([r for r, _, _ in cells], dtype=np.int32), np.array([c for _, c, _ in cells], dtype=np.int32)),
        ),
        shape=(rows, columns),
    )
    return draw(st.sampled_from([matrix, matrix.tocsr()]))


@settings(max_examples=examples(300), deadline=None)
@given(sparse_matrices())
def test_sparse_matrix_text_is_upstreams(matrix):
    assert training.sparse_matrix_text(matrix) == training._UPSTREAM_TO_STRING(matrix)


def test_installed_features_keep_their_fingerprints(project):
    matrix = scipy.sparse.coo_matrix(np.array([[0, 1.5, 0], [2.0, 0, 1 / 3]]))

    def fingerprint() -> str:
        return Features(matrix, "sequence", "text", "CountVectorsFeaturizer").fingerprint()

    upstream = fingerprint()
    training.install()
    assert util.sparse_matrix_to_string is training.sparse_matrix_text
    assert fingerprint() == upstream

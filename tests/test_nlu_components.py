"""The mixed Chinese/English tokenizer, the language detector and the gated selector."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import (
    CountVectorsFeaturizer,
)
from rasa.nlu.selectors.response_selector import ResponseSelector
from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader
from rasa.shared.nlu.training_data.message import Message

from nlu_components.chinese import fold
from nlu_components.language import LanguageDetector, detect_language
from nlu_components.response_selector import IntentGatedResponseSelector
from nlu_components.tokenizer import MixedJiebaTokenizer, is_word


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    storage = LocalModelStorage(tmp_path_factory.mktemp("model"))
    config = {**MixedJiebaTokenizer.get_default_config(), "dictionary_path": "data/jieba"}
    return MixedJiebaTokenizer.create(config, storage, Resource("tokenizer"), ExecutionContext(graph_schema=None))


def tokens(tokenizer, text):
    return [(t.text, t.start, t.end) for t in tokenizer.tokenize(Message(data={"text": text}), "text")]


def test_english_has_no_whitespace_tokens(tokenizer):
    assert tokens(tokenizer, "terminal shows 1000 help") == [
        ("terminal", 0, 8),
        ("shows", 9, 14),
        ("1000", 15, 19),
        ("help", 20, 24),
    ]


def test_mixed_text_keeps_offsets_and_user_dictionary_words(tokenizer):
    text = "pos机报1000咋整, 商户号 898310048160123 要冲正吗?"
    result = tokens(tokenizer, text)
    assert all(text[start:end] == word for word, start, end in result)
    assert all(is_word(word) for word, _, _ in result)
    words = [word for word, _, _ in result]
    assert "商户号" in words and "冲正" in words and "1000" in words
    assert " " not in words and "," not in words and "?" not in words


def test_punctuation_only_message_keeps_one_token(tokenizer):
    assert tokens(tokenizer, " ？？ ") == [("？？", 1, 3)]


def test_traditional_and_full_width_text_is_segmented_as_simplified_at_its_own_offsets(tokenizer):
    text = "POS機顯示１０００是什麼意思，刷卡機報錯了"
    result = tokens(tokenizer, text)
    assert [word for word, _, _ in result] == [word for word, _, _ in tokens(tokenizer, "POS机显示1000是什么意思，刷卡机报错了")]
    assert all(end - start == len(word) and fold(text[start:end]) == word for word, start, end in result)
    assert "刷卡机" in [word for word, _, _ in result]


@given(st.text(max_size=40))
def test_folding_keeps_every_offset(text):
    folded = fold(text)
    assert len(folded) == len(text)
    assert fold(folded) == folded


def test_folding_maps_traditional_and_full_width_characters():
    assert fold("報錯１００１，顧客的錢扣了嗎？") == "报错1001,顾客的钱扣了吗?"
    assert fold("terminal shows 1000") == "terminal shows 1000"


@pytest.mark.parametrize(
    "text, language",
    [
        ("pos机报1000咋整", "zh"),
        ("刷卡机一直1000", "zh"),
        ("terminal shows 1000 help", "en"),
        ("POS显示error 1000", "zh"),
        ("1000", None),
        ("2.3.1", None),
        ("👍", None),
        ("", None),
        ("ok", "en"),
    ],
)
def test_detect_language(text, language):
    assert detect_language(text) == language


def test_detector_adds_a_language_entity_only_when_it_knows():
    detector = LanguageDetector()
    zh, unknown = Message(data={"text": "还是不行"}), Message(data={"text": "1000"})
    detector.process([zh, unknown])
    assert [(e["entity"], e["value"]) for e in zh.get("entities")] == [("language", "zh")]
    assert unknown.get("entities", []) == []


# A tiny pipeline: our tokenizer, counts, and the gated selector trained on two FAQ answers
# (plus a non-FAQ intent that training must filter out, as Rasa's does).
TINY_DATA = """
version: "3.1"
nlu:
- intent: faq/fees
  examples: |
    - 手续费多少
    - what are the fees
    - 刷卡费率是多少
    - how much does a card payment cost
- intent: faq/apply
  examples: |
    - 申请pos机要什么材料
    - how do I apply for a terminal
    - 怎么申请刷卡机
    - what documents do I need for a pos
- intent: start_diagnostics
  examples: |
    - 一步一步教我排查
    - walk me through the checks
responses:
  utter_faq/fees:
  - text: fees answer
  utter_faq/apply:
  - text: apply answer
"""

NO_PREDICTION = {
    "all_retrieval_intents": ["faq"],
    "faq": {
        "response": {
            "responses": None,
            "confidence": 0.0,
            "intent_response_key": None,
            "utter_action": "utter_None",
        },
        "ranking": [],
    },
}


@pytest.fixture(scope="module")
def tiny_pipeline(tokenizer, tmp_path_factory):
    storage = LocalModelStorage(tmp_path_factory.mktemp("selector"))
    context = ExecutionContext(graph_schema=None)
    data = RasaYAMLReader().reads(TINY_DATA)
    tokenizer.process_training_data(data)
    featurizer = CountVectorsFeaturizer.create(CountVectorsFeaturizer.get_default_config(), storage, Resource("cvf"), context)
    featurizer.train(data)
    featurizer.process_training_data(data)
    config = {
        **IntentGatedResponseSelector.get_default_config(),
        "retrieval_intent": "faq",
        "epochs": 30,
        "constrain_similarities": True,
        "random_seed": 42,
    }
    selector = IntentGatedResponseSelector.create(config, storage, Resource("rs"), context)
    selector.train(data)
    return tokenizer, featurizer, selector


def featurized(pipeline, text, intent):
    """A message as the selector sees it: tokenized, featurized, intent set by DIET."""
    tokenizer, featurizer, _ = pipeline
    message = Message(data={"text": text})
    tokenizer.process([message])
    featurizer.process([message])
    message.set("intent", {"name": intent, "confidence": 0.9}, add_to_output=True)
    return message


@pytest.fixture
def model_calls(tiny_pipeline, monkeypatch):
    """Count calls into the selector's TensorFlow model."""
    selector = tiny_pipeline[2]
    calls = []
    run_inference = selector.model.run_inference

    def spy(*args, **kwargs):
        calls.append(args)
        return run_inference(*args, **kwargs)

    monkeypatch.setattr(selector.model, "run_inference", spy)
    return calls


@pytest.mark.process  # trains the tiny selector (tests/harness/fixtures.py)
@pytest.mark.parametrize("text, key", [("手续费多少", "faq/fees"), ("how do I apply for a terminal", "faq/apply")])
def test_selector_predicts_for_the_retrieval_intent(tiny_pipeline, model_calls, text, key):
    message = featurized(tiny_pipeline, text, "faq")
    tiny_pipeline[2].process([message])
    selected = message.get("response_selector")
    assert selected["all_retrieval_intents"] == ["faq"]
    assert selected["faq"]["response"]["intent_response_key"] == key
    assert selected["faq"]["response"]["utter_action"] == f"utter_{key}"
    assert selected["faq"]["response"]["responses"] == [{"text": key.split("/")[1] + " answer"}]
    assert {label["intent_response_key"] for label in selected["faq"]["ranking"]} == {
        "faq/fees",
        "faq/apply",
    }
    assert len(model_calls) == 1


@pytest.mark.process  # trains the tiny selector (tests/harness/fixtures.py)
@pytest.mark.parametrize("intent", ["start_diagnostics", "nlu_fallback", None])
def test_other_intents_get_no_prediction_without_a_model_call(tiny_pipeline, model_calls, intent):
    message = featurized(tiny_pipeline, "手续费多少", intent)
    tiny_pipeline[2].process([message])
    assert message.get("response_selector") == NO_PREDICTION
    assert "response_selector" in message.as_dict(only_output_properties=True)
    assert model_calls == []


@pytest.mark.process  # trains the tiny selector (tests/harness/fixtures.py)
def test_no_prediction_is_what_rasas_selector_writes_without_a_model_answer(tiny_pipeline, tmp_path):
    gated = tiny_pipeline[2]
    # Rasa's own selector with no trained model takes its "no output" path.
    stock = ResponseSelector.create(
        {**ResponseSelector.get_default_config(), "retrieval_intent": "faq"},
        LocalModelStorage(tmp_path),
        Resource("stock"),
        ExecutionContext(graph_schema=None),
    )
    stock.responses, stock.all_retrieval_intents = gated.responses, gated.all_retrieval_intents
    ours = featurized(tiny_pipeline, "一步一步教我排查", "start_diagnostics")
    rasas = featurized(tiny_pipeline, "一步一步教我排查", "start_diagnostics")
    gated.process([ours])
    stock.process([rasas])
    assert ours.get("response_selector") == rasas.get("response_selector") == NO_PREDICTION

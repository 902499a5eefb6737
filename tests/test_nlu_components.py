"""The mixed Chinese/English tokenizer and the language detector."""
from __future__ import annotations

import pytest
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message

from nlu_components.language import LanguageDetector, detect_language
from nlu_components.tokenizer import MixedJiebaTokenizer, is_word


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    storage = LocalModelStorage(tmp_path_factory.mktemp("model"))
    config = {**MixedJiebaTokenizer.get_default_config(), "dictionary_path": "data/jieba"}
    return MixedJiebaTokenizer.create(
        config, storage, Resource("tokenizer"), ExecutionContext(graph_schema=None)
    )


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

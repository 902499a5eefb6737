"""Jieba tokenizer that works on mixed Chinese / English text.

Rasa 3.6's ``JiebaTokenizer`` returns every whitespace run and punctuation mark as a
token (RasaHQ/rasa#7910): "terminal shows 1000" becomes ``terminal``, `` ``, ``shows``,
…, so English messages get whitespace features and token offsets the featurizers do not
expect. This subclass keeps the user-dictionary handling of the original and drops the
tokens that carry no word, and segments the text with traditional characters and
full-width forms folded (``nlu_components.chinese.fold``): "刷卡機" is the word "刷卡机"
the training data knows, at the same offsets in the merchant's own text.
"""

from __future__ import annotations

import unicodedata
from typing import List, Text

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.tokenizers.jieba_tokenizer import JiebaTokenizer
from rasa.nlu.tokenizers.tokenizer import Token
from rasa.shared.nlu.training_data.message import Message

from nlu_components.chinese import fold


def is_word(token_text: Text) -> bool:
    """Return True when the token has at least one letter, digit or CJK character."""
    return any(unicodedata.category(char)[0] in ("L", "N") for char in token_text)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=True)
class MixedJiebaTokenizer(JiebaTokenizer):
    """``JiebaTokenizer`` without whitespace and punctuation tokens.

    Use it in ``config.yml`` in place of ``JiebaTokenizer``, with the same options
    (``dictionary_path`` points at a folder of jieba user dictionaries)::

        - name: nlu_components.tokenizer.MixedJiebaTokenizer
          dictionary_path: data/jieba
    """

    def tokenize(self, message: Message, attribute: Text) -> List[Token]:
        """Tokenize the folded text with jieba and keep only tokens that contain a word character."""
        import jieba

        text = message.get(attribute)
        tokens = [Token(word, start) for (word, start, _end) in jieba.tokenize(fold(text)) if is_word(word)]
        if not tokens and text:
            # Featurizers need at least one token; a message of pure punctuation or
            # emoji keeps its stripped text as a single token.
            stripped = text.strip() or text
            tokens = [Token(stripped, text.index(stripped))]
        return self._apply_token_pattern(tokens)

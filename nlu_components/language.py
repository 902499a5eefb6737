"""Detects whether a merchant wrote in Chinese or in English.

The result is emitted as a ``language`` entity so that the ``language`` slot (declared
with a ``from_entity`` mapping and ``influence_conversation: false``) is set on every
turn without a round trip to the action server; responses carry variations conditioned
on that slot.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message

from nlu_components.entities import add_entity

# CJK Unified Ideographs and extension A; punctuation alone says nothing.
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def detect_language(text: Text) -> Optional[Text]:
    """Return ``"zh"`` if the text has any Chinese, ``"en"`` if it has English words.

    Messages with neither (``"1000"``, an emoji, a version number) return ``None`` so
    the conversation keeps the language it already had.
    """
    if _CJK.search(text):
        return "zh"
    if _LATIN_WORD.search(text):
        return "en"
    return None


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=False)
class LanguageDetector(GraphComponent):
    """Adds a ``language`` entity (``zh`` / ``en``) to each parsed message."""

    ENTITY = "language"

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> LanguageDetector:
        """Create the component (it has no state)."""
        return cls()

    def process(self, messages: List[Message]) -> List[Message]:
        """Append the language entity to every message that has a detectable one."""
        for message in messages:
            text = message.get(TEXT) or ""
            language = detect_language(text)
            if language is None:
                continue
            add_entity(message, self.ENTITY, language, 0, len(text), self.__class__.__name__)
        return messages

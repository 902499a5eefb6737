"""Adding an entity to a parsed message, as Rasa's own extractors write it."""

from __future__ import annotations

from typing import Text

from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    EXTRACTOR,
)
from rasa.shared.nlu.training_data.message import Message


def add_entity(message: Message, entity: Text, value: Text, start: int, end: int, extractor: Text) -> None:
    """Append one entity (type, value, span, the component that found it) to the message's output."""
    found = {
        ENTITY_ATTRIBUTE_TYPE: entity,
        ENTITY_ATTRIBUTE_VALUE: value,
        ENTITY_ATTRIBUTE_START: start,
        ENTITY_ATTRIBUTE_END: end,
        EXTRACTOR: extractor,
    }
    message.set(ENTITIES, message.get(ENTITIES, []) + [found], add_to_output=True)

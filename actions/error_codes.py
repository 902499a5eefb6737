"""The answer to a merchant who names an error code other than 1000.

NLU marks such a message ``other_error_code`` with the code as the ``error_code`` entity
(``nlu_components/error_codes.py``). The answer is never a 1000 answer: a code listed in
``data/knowledge/error_codes.yml`` is explained from there, any other is named back with the
steps that are safe whatever the code; both offer a person, and the ``error_code`` slot puts
the code on the case.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Text

import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.language import language_of, pick_text
from actions.settings import current_settings
from common.error_codes import canonical
from common.reloading import reread_when_changed


@dataclass(frozen=True)
class CodeAnswer:
    """What a listed code means and what to do, each ``{"zh": ..., "en": ...}``."""

    meaning: Dict[str, str]
    steps: Dict[str, str]


class ErrorCodeTable:
    """``data/knowledge/error_codes.yml``: the steps safe for any code, and the listed codes."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.general_steps: Dict[str, str] = data["general_steps"]
        self._codes = {
            canonical(str(code)): CodeAnswer(entry["meaning"], entry["steps"]) for code, entry in (data.get("codes") or {}).items()
        }

    @classmethod
    def from_file(cls, path: Path) -> ErrorCodeTable:
        """Read the table from its YAML file."""
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")))

    def lookup(self, code: str) -> Optional[CodeAnswer]:
        """The listed answer for a code, or None."""
        return self._codes.get(canonical(code))


@reread_when_changed()
def load_error_codes(path: Path) -> ErrorCodeTable:
    """Load and cache the table (read again when the file changes)."""
    return ErrorCodeTable.from_file(path)


def named_code(tracker: Tracker) -> Optional[Text]:
    """The code of the latest message, else the one the conversation last named."""
    latest = next(iter(tracker.get_latest_entity_values("error_code")), None)
    return latest or tracker.get_slot("error_code")


class ActionAnswerOtherCode(Action):
    """Answers a question about an error code this assistant does not cover (not 1000)."""

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_answer_other_code"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """The listed code's meaning and steps, or the code named back with the safe steps;
        the code is kept for the case (also when this message only said "the same code")."""
        table = load_error_codes(current_settings().error_codes_file)
        language = language_of(tracker)
        code = named_code(tracker)
        if code is None:
            dispatcher.utter_message(response="utter_other_error_code_unnamed", general_steps=pick_text(table.general_steps, language))
            return []
        code = canonical(code)
        listed = table.lookup(code)
        if listed is not None:
            dispatcher.utter_message(
                response="utter_other_error_code_listed",
                error_code=code,
                code_meaning=pick_text(listed.meaning, language),
                code_steps=pick_text(listed.steps, language),
            )
        else:
            dispatcher.utter_message(
                response="utter_other_error_code", error_code=code, general_steps=pick_text(table.general_steps, language)
            )
        return [SlotSet("error_code", code)]

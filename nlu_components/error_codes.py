"""Error codes a merchant names, and the intent for a code this assistant does not cover.

The assistant covers error 1000. A merchant who asks "pos机报错1001是什么意思" or "报错E05怎么办"
reads to DIET almost exactly like a question about 1000 (one character apart), so DIET
cannot be trusted to tell them apart, and a 1000 answer must never be given for another
code. This component, last in the pipeline, reads the codes named in the text by rules:

* a code is ``1000``, ``1001``, ``51``, ``E05``, ``ERR-12`` … right after a cue (报错, 错误码,
  显示, 提示, error, code, shows …) or, for a number, right before one (``1001错误``,
  ``1001是什么意思``, ``1001 mean``);
* a number followed by a unit is not a code: a year (``2023年``), an amount (``1500元``), a
  time (``10:05``, ``3点``), a count (``2笔``); nor is a version (``2.1000``) or a terminal
  model (``A920``, ``P2``: every alias of ``data/knowledge/terminals.yml``).

It emits one ``error_code`` entity (the covered code when it is named, else the first other
code), which the ``error_code`` slot records for the case. When the message names another
code and not the covered one, the intent becomes ``other_error_code`` (confidence 1.0, a
rule's certainty, like Rasa's keyword classifier), unless the intent is one of
``keep_intents`` (a request for a person, a detail given, yes / no …): those keep their
meaning and only carry the code. Configured in ``config.yml``::

    - name: nlu_components.error_codes.OtherErrorCodeClassifier
      covered_code: "1000"
      terminals_file: data/knowledge/terminals.yml
      keep_intents: [request_human, inform, affirm, deny, ...]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Text

import yaml
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import (
    INTENT,
    INTENT_NAME_KEY,
    INTENT_RANKING_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from common.error_codes import canonical
from common.reloading import reread_when_changed
from nlu_components.chinese import fold
from nlu_components.entities import add_entity

INTENT_NAME = "other_error_code"
ENTITY = "error_code"

# A code: letters then digits (E05, ERR-12) or a number of 2-5 digits, never inside a
# longer run of letters, digits or a dotted version.
_CODE = r"(?P<code>[A-Za-z]{1,3}-?\d{1,4}|\d{2,5})"
_NOT_BEFORE = r"(?<![A-Za-z0-9.:：\-/])"
# What may follow a code: not a digit, letter, dot, colon, percent, date separator or unit
# (年 元 块 次 …).
# 多 几 来 余 (20多次, 10几笔) make a number a count too; a space may stand before a unit.
_UNITS = "年元块圆毛角分秒点时天月日次笔台个张件位人万千百米斤多几来余"
_NOT_AFTER = (
    rf"(?![A-Za-z0-9.:：%/\-]|\s*[{_UNITS}]"
    r"|\s*(?:yuan|rmb|dollars?|usd|times|pcs|am|pm|seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?)\b)"
)
_CUE_BEFORE = (
    r"(?:报错|报了|报|错误码|错误代码|错误号|错误|故障码|故障代码|代码|返回码|应答码|响应码|提示码|显示|提示|出现|跳出|跳|弹出"
    r"|error\s+code|error|err|code|shows?|showing|displays?|says|reads|what(?:'s|\s+is|\s+does))"
)
_GAP = r"\s*(?:了|个|了个|一个|了一个)?\s*(?:是|为|:|：|#|号)?\s*[\"“”'‘’「（(]?\s*"
_CUE_AFTER = r"(?:\s*号?\s*(?:错误|报错|故障|错|是什么|是啥|啥意思|什么意思|怎么|咋|代表|表示|error|code|means?\b))"
CUED = re.compile(rf"{_CUE_BEFORE}{_GAP}{_CODE}{_NOT_AFTER}", re.IGNORECASE)
# A message that is only a code ("1001", "E05?").
ALONE = re.compile(r"^\s*(?P<code>[A-Za-z]{1,3}-?\d{1,4}|\d{3,5})\s*[?？!！。.]*\s*$")
NUMBER_THEN_CUE = re.compile(rf"{_NOT_BEFORE}(?P<code>\d{{3,5}}){_NOT_AFTER}[\"”'’」）)]?(?={_CUE_AFTER})", re.IGNORECASE)
_MODEL_TOKEN = re.compile(r"[A-Za-z]+\d+")


def codes_named(text: Text, not_codes: Iterable[Text] = ()) -> List[Dict[str, Any]]:
    """The codes named in ``text``, in order of appearance, each once: ``value`` (canonical),
    ``start``, ``end``. ``not_codes`` are tokens that are never codes (terminal models)."""
    excluded = {canonical(token) for token in not_codes}
    found: Dict[str, Dict[str, Any]] = {}
    for pattern in (CUED, NUMBER_THEN_CUE, ALONE):
        for match in pattern.finditer(text):
            value = canonical(match.group("code"))
            if value in excluded or value in found:
                continue
            found[value] = {"value": value, "start": match.start("code"), "end": match.end("code")}
    return sorted(found.values(), key=lambda item: item["start"])


@reread_when_changed()
def model_tokens(terminals_file: Path) -> FrozenSet[Text]:
    """The letter-and-digit tokens of every terminal model alias (``PAX A920`` → ``A920``),
    read again when the file changes (a model an operator adds in the console)."""
    if not terminals_file.is_file():
        return frozenset()
    data = yaml.safe_load(terminals_file.read_text(encoding="utf-8")) or {}
    aliases = [alias for model in (data.get("models") or {}).values() for alias in model.get("aliases", [])]
    return frozenset(canonical(token) for alias in aliases for token in _MODEL_TOKEN.findall(alias))


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class OtherErrorCodeClassifier(GraphComponent):
    """Records the error code a message names; another code than the covered one becomes
    the ``other_error_code`` intent (see the module docstring for the rules)."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """The covered code, where terminal models are listed, and the intents kept."""
        return {"covered_code": "1000", "terminals_file": "data/knowledge/terminals.yml", "keep_intents": []}

    def __init__(self, covered_code: Text, terminals_file: Path, keep_intents: FrozenSet[Text]) -> None:
        self.covered_code = canonical(covered_code)
        self.terminals_file = terminals_file
        # The covered code anywhere as a number of its own ("1000 and 1001 errors"): a
        # message that names it is about it, whatever else it names.
        self._covered_anywhere = re.compile(rf"{_NOT_BEFORE}{re.escape(covered_code)}{_NOT_AFTER}", re.IGNORECASE)
        self.keep_intents = keep_intents

    @property
    def not_codes(self) -> FrozenSet[Text]:
        """The terminal models' tokens, as the file says now (an operator may add one)."""
        return model_tokens(self.terminals_file)

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> OtherErrorCodeClassifier:
        """The terminal models' file is relative to the project (read when it changes)."""
        return cls(
            str(config["covered_code"]),
            Path(config["terminals_file"]),
            frozenset(config.get("keep_intents") or ()),
        )

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Nothing to learn: the rules are the same in training and at run time."""
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        """Add the ``error_code`` entity; reclassify a message about another code."""
        for message in messages:
            self._process_one(message)
        return messages

    def _process_one(self, message: Message) -> None:
        # Folded (報錯 → 报错, １００１ → 1001), same offsets as the merchant's text.
        text = fold(message.get(TEXT) or "")
        codes = codes_named(text, self.not_codes)
        if not codes:
            self._not_without_a_code(message)
            return
        covered = next((code for code in codes if code["value"] == self.covered_code), None)
        if covered is None and (bare := self._covered_anywhere.search(text)):
            covered = {"value": self.covered_code, "start": bare.start(), "end": bare.end()}
        chosen = covered or codes[0]
        add_entity(message, ENTITY, chosen["value"], chosen["start"], chosen["end"], self.__class__.__name__)
        intent: Optional[Dict[Text, Any]] = message.get(INTENT)
        if covered is not None:
            self._not_without_a_code(message)
            return
        if (intent or {}).get(INTENT_NAME_KEY) in self.keep_intents:
            return
        ranked = {INTENT_NAME_KEY: INTENT_NAME, PREDICTED_CONFIDENCE_KEY: 1.0}
        ranking = [item for item in message.get(INTENT_RANKING_KEY) or [] if item.get(INTENT_NAME_KEY) != INTENT_NAME]
        message.set(INTENT, ranked, add_to_output=True)
        message.set(INTENT_RANKING_KEY, [ranked, *ranking], add_to_output=True)

    def _not_without_a_code(self, message: Message) -> None:
        """``other_error_code`` from DIET (an operator labelled an example so) stands only
        with another code named: else the next intent of the ranking."""
        if (message.get(INTENT) or {}).get(INTENT_NAME_KEY) != INTENT_NAME:
            return
        ranking = [item for item in message.get(INTENT_RANKING_KEY) or [] if item.get(INTENT_NAME_KEY) != INTENT_NAME]
        fallback = ranking[0] if ranking else {INTENT_NAME_KEY: "nlu_fallback", PREDICTED_CONFIDENCE_KEY: 0.0}
        message.set(INTENT, dict(fallback), add_to_output=True)
        message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)

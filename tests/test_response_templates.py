"""Every domain response, rendered by Rasa's own response generator, logs no error.

Rasa fills ``{name}`` in a response's text and buttons from the slots and from the values
an action passes (rasa/core/nlg/interpolator.py, ``interpolate_text``). Anything else in
braces is taken for a variable too: a button payload that carries entities as JSON
(``/inform_not_fixed{"shop_offline": "true"}``) raised a KeyError there, logged as the error
``interpolator.interpolate.text`` with a traceback each time the response went out. The
domain writes such braces doubled (``{{ }}``), which the interpolator turns back into the
single braces of the payload Rasa then parses.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import SlotSet
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
from rasa.shared.nlu.training_data.message import Message
from structlog.testing import capture_logs

from tests.harness.processes import ROOT

# A variable as a custom action fills it (the same braces interpolate_text reads).
VARIABLE = re.compile(r"{(\w+)}")
SHOP_OFFLINE = '/inform_not_fixed{"shop_offline": "true"}'


@pytest.fixture(scope="module")
def rasa_domain() -> Domain:
    return Domain.load(str(ROOT / "domain"))


def strings(value: Any) -> Iterator[str]:
    """Every string inside a response (text, button titles and payloads, custom)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def variations(domain: Domain) -> Iterator[Tuple[str, str, Dict[str, Any]]]:
    """(response, language, variation) for every variation of every response."""
    for name, options in domain.responses.items():
        for option in options:
            condition = option.get("condition") or []
            language = next((c["value"] for c in condition if c.get("name") == "language"), "zh")
            yield name, language, {key: value for key, value in option.items() if key != "condition"}


async def render(domain: Domain, name: str, language: str, variation: Dict[str, Any]) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """The variation as Rasa sends it, and what Rasa logged meanwhile.

    Variables that are no slot get a value, as the action sending the response passes one."""
    tracker = DialogueStateTracker.from_events("merchant", [SlotSet("language", language)], slots=domain.slots)
    slots = {slot.name for slot in domain.slots}
    passed = {key: f"<{key}>" for text in strings(variation) for key in VARIABLE.findall(text) if key not in slots}
    generator = TemplatedNaturalLanguageGenerator({name: [variation]})
    with capture_logs() as logs:
        message = await generator.generate(name, tracker, "rest", **passed)
    return message or {}, logs


async def test_no_response_logs_an_interpolation_error(rasa_domain):
    failures = []
    for name, language, variation in variations(rasa_domain):
        _, logs = await render(rasa_domain, name, language, variation)
        failures += [
            f"{name} ({language}): {log['event']} {log.get('placeholder_key')!r}"
            for log in logs
            if log.get("log_level") in ("error", "critical")
        ]
    assert failures == []


@pytest.mark.parametrize("language, index", [("en", 0), ("zh", 1)])
async def test_the_shop_offline_button_still_sets_its_entity_and_slot(rasa_domain, language, index):
    message, logs = await render(rasa_domain, "utter_ask_network_ok", language, rasa_domain.responses["utter_ask_network_ok"][index])
    assert logs == []
    payload = message["buttons"][2]["payload"]
    assert payload == SHOP_OFFLINE
    # Rasa reads the payload the widget sends back: the intent and the entity.
    parsed = YAMLStoryReader.unpack_regex_message(Message(data={"text": payload}), rasa_domain)
    assert parsed.get("intent")["name"] == "inform_not_fixed"
    assert [(e["entity"], e["value"]) for e in parsed.get("entities")] == [("shop_offline", "true")]
    # ... and the slot's mapping takes it from that entity.
    mappings = rasa_domain.slots[[slot.name for slot in rasa_domain.slots].index("shop_offline")].mappings
    assert mappings == [{"type": "from_entity", "entity": "shop_offline"}]

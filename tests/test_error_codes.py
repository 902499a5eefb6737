"""Error codes other than 1000: what NLU reads as a code, the intent it gives, the answer.

The rules of ``nlu_components/error_codes.py`` run here on Rasa's own ``Message``; the answer
is ``actions/error_codes.py`` against ``data/knowledge/error_codes.yml`` and the domain. The
same messages through the trained model are in tests/test_conversations.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given, strategies as st
from rasa.shared.nlu.training_data.message import Message
from rasa_sdk.events import SlotSet

from actions import error_codes as answers
from actions.error_codes import ActionAnswerOtherCode, ErrorCodeTable, load_error_codes
from actions.settings import load_settings
from nlu_components.error_codes import INTENT_NAME, OtherErrorCodeClassifier, codes_named, model_tokens
from tests.harness.processes import ROOT

TERMINALS = ROOT / "data/knowledge/terminals.yml"
MODELS = model_tokens(TERMINALS)
KEEP = frozenset({"request_human", "affirm"})


def parsed(text: str, intent: str = "ask_error_meaning", confidence: float = 0.93) -> Message:
    """The message as DIET and the fallback classifier leave it, then the component's rules."""
    message = Message(
        data={
            "text": text,
            "intent": {"name": intent, "confidence": confidence},
            "intent_ranking": [{"name": intent, "confidence": confidence}, {"name": "ask_how_to_fix", "confidence": 0.05}],
        }
    )
    OtherErrorCodeClassifier("1000", TERMINALS, KEEP).process([message])
    return message


def entity_values(message: Message) -> list:
    return [(e["entity"], e["value"]) for e in message.get("entities", [])]


@pytest.mark.parametrize(
    "text, codes",
    [
        ("pos机报错1001是什么意思", ["1001"]),
        ("报错E05怎么办", ["E05"]),
        ("终端提示错误代码：E-05", ["E05"]),
        ("屏幕上跳出个1001，这代码到底啥意思", ["1001"]),
        ("报错代码1001", ["1001"]),
        ("1001号错误", ["1001"]),
        ("1002是啥", ["1002"]),
        ("刷卡提示55", ["55"]),
        ("显示“ERR-12”", ["ERR12"]),
        ("what does 1001 mean", ["1001"]),
        ("error code E05 on my PAX A920", ["E05"]),
        ("code 51", ["51"]),
        ("1001", ["1001"]),
        ("pos机报1000咋整", ["1000"]),
        ("A920报错1000", ["1000"]),
        ("the terminal shows 1000", ["1000"]),
        ("刷1000元的时候报错1001", ["1001"]),
        # not codes: years, amounts, times, dates, versions, counts, terminal models, long numbers
        ("2023年买的A920报错了", []),
        ("版本2.1000", []),
        ("10:05开始报错", []),
        ("2023-05-01报错了", []),
        ("it says 500 yuan", []),
        ("报错了3次", []),
        ("显示A920", []),
        ("我的P2一直报错", []),
        ("商户号898310048160123报错", []),
        ("error at 12pm", []),
        ("12", []),
        ("这个错误出现了20多次", []),
        ("已经跳了50多笔", []),
        ("出现10几次", []),
        ("显示 2023 年的记录", []),
        ("error 15 minutes ago", []),
        ("it says 30 minutes", []),
        ("the terminal shows 12 hours offline", []),
    ],
)
def test_the_codes_a_message_names(text, codes):
    assert [found["value"] for found in codes_named(text, MODELS)] == codes


def test_every_terminal_model_alias_is_excluded():
    data = yaml.safe_load(TERMINALS.read_text(encoding="utf-8"))
    for model in data["models"].values():
        for alias in model["aliases"]:
            assert codes_named(f"显示{alias}", MODELS) == [], alias
    assert {"A920", "N910", "P2"} <= MODELS
    assert model_tokens(ROOT / "no-such-file.yml") == frozenset()


@given(year=st.integers(1990, 2099), cue=st.sampled_from(["报错", "显示", "提示"]))
def test_a_year_is_never_a_code(year, cue):
    assert codes_named(f"{year}年买的机器今天{cue}了", MODELS) == []
    assert [c["value"] for c in codes_named(f"{year}年买的机器{cue}1001", MODELS)] == ["1001"]


@given(
    amount=st.integers(10, 99999), unit=st.sampled_from(["元", "块", " yuan", " RMB", "笔"]), cue=st.sampled_from(["报错", "显示", "error"])
)
def test_an_amount_or_a_count_is_never_a_code(amount, unit, cue):
    assert codes_named(f"{cue}{amount}{unit}", MODELS) == []


def test_another_code_becomes_its_own_intent_with_the_code():
    message = parsed("pos机报错1001是什么意思")
    assert message.get("intent") == {"name": INTENT_NAME, "confidence": 1.0}
    assert message.get("intent_ranking")[0]["name"] == INTENT_NAME
    assert [r["name"] for r in message.get("intent_ranking")[1:]] == ["ask_error_meaning", "ask_how_to_fix"]
    assert entity_values(message) == [("error_code", "1001")]
    # Also when DIET was unsure (the fallback classifier's intent).
    assert parsed("报错E05怎么办", intent="nlu_fallback", confidence=0.3).get("intent")["name"] == INTENT_NAME


def test_a_message_about_1000_stays_about_1000():
    for text in ("pos机报1000咋整", "之前报1001，现在报1000", "1000 and 1001 errors"):
        message = parsed(text)
        assert message.get("intent")["name"] == "ask_error_meaning", text
        assert entity_values(message) == [("error_code", "1000")], text
    # No code at all: nothing added, nothing changed.
    message = parsed("2023年买的机器坏了吗")
    assert message.get("intent")["name"] == "ask_error_meaning" and entity_values(message) == []


def test_traditional_and_full_width_text_names_its_code():
    message = parsed("POS機報錯１００１是什麼意思")
    assert message.get("intent")["name"] == INTENT_NAME and entity_values(message) == [("error_code", "1001")]
    assert parsed("顯示１０００怎麼辦").get("intent")["name"] == "ask_error_meaning"


def test_kept_intents_only_carry_the_code():
    message = parsed("转人工，报错1001", intent="request_human")
    assert message.get("intent")["name"] == "request_human"
    assert entity_values(message) == [("error_code", "1001")]


def test_the_component_is_built_from_config_yml():
    config = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))
    [entry] = [item for item in config["pipeline"] if item["name"].endswith("OtherErrorCodeClassifier")]
    assert config["pipeline"][-1] is entry  # last: after DIET and the fallback classifier
    component = OtherErrorCodeClassifier.create({**OtherErrorCodeClassifier.get_default_config(), **entry}, None, None, None)
    assert component.covered_code == "1000" and component.not_codes == MODELS
    domain_intents = {i for f in (ROOT / "domain").glob("*.yml") for i in (yaml.safe_load(f.read_text("utf-8")).get("intents") or [])}
    assert component.keep_intents <= domain_intents and INTENT_NAME in domain_intents


# --- the answer -------------------------------------------------------------------------


@pytest.fixture
def table_file(monkeypatch, tmp_path):
    """The shipped code table, or one written by the test, as the action's settings."""

    def use(path: Path = ROOT / "data/knowledge/error_codes.yml") -> ErrorCodeTable:
        settings = replace(load_settings(environ={}), error_codes_file=path)
        monkeypatch.setattr(answers, "current_settings", lambda: settings)
        return load_error_codes(path)

    return use


def code_entity(value: str) -> list:
    return [{"entity": "error_code", "value": value}]


async def test_an_unlisted_code_is_named_back_with_the_safe_steps(make_tracker, dispatcher, domain, table_file):
    table = table_file()
    events = await ActionAnswerOtherCode().run(dispatcher, make_tracker(intent=INTENT_NAME, entities=code_entity("1001")), domain)
    assert events == [SlotSet("error_code", "1001")]
    [message] = dispatcher.messages
    assert message["response"] == "utter_other_error_code"
    assert message["error_code"] == "1001" and message["general_steps"] == table.general_steps["zh"]
    # In English, the English steps.
    dispatcher.messages.clear()
    tracker = make_tracker(slots={"language": "en"}, intent=INTENT_NAME, entities=code_entity("E05"))
    await ActionAnswerOtherCode().run(dispatcher, tracker, domain)
    assert dispatcher.messages[0]["general_steps"] == table.general_steps["en"]


async def test_a_listed_code_is_answered_from_the_table(make_tracker, dispatcher, domain, table_file, tmp_path):
    path = tmp_path / "codes.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "general_steps": {"zh": "记下提示。", "en": "Note the message."},
                "codes": {
                    "e-07": {
                        "meaning": {"zh": "读卡器故障。", "en": "card reader fault."},
                        "steps": {"zh": "换插卡。", "en": "Tap instead."},
                    }
                },
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    table_file(path)
    tracker = make_tracker(slots={"language": "en"}, intent=INTENT_NAME, entities=code_entity("E07"))
    await ActionAnswerOtherCode().run(dispatcher, tracker, domain)
    [message] = dispatcher.messages
    assert message["response"] == "utter_other_error_code_listed"
    assert (message["error_code"], message["code_meaning"], message["code_steps"]) == ("E07", "card reader fault.", "Tap instead.")


async def test_the_shipped_table_has_both_languages_for_every_code(table_file):
    table = table_file()
    assert set(table.general_steps) == {"zh", "en"}
    for code in ("51", "54", "55"):
        listed = table.lookup(code)
        assert listed is not None and set(listed.meaning) == set(listed.steps) == {"zh", "en"}
    assert table.lookup("1001") is None


async def test_no_code_at_all_is_still_not_a_1000_answer(make_tracker, dispatcher, domain, table_file):
    table_file()
    assert await ActionAnswerOtherCode().run(dispatcher, make_tracker(intent=INTENT_NAME), domain) == []
    assert [m["response"] for m in dispatcher.messages] == ["utter_other_error_code_unnamed"]
    # The code the conversation named before is used when the message has none.
    dispatcher.messages.clear()
    await ActionAnswerOtherCode().run(dispatcher, make_tracker(slots={"error_code": "2003"}, intent=INTENT_NAME), domain)
    assert dispatcher.messages[0]["error_code"] == "2003"


def test_every_answer_offers_a_person_in_both_languages(domain):
    for name in ("utter_other_error_code", "utter_other_error_code_listed", "utter_other_error_code_unnamed"):
        variations = domain["responses"][name]
        assert len(variations) == 2
        for variation in variations:
            assert [b["payload"] for b in variation["buttons"]] == ["/request_human"]
            assert "1000" in variation["text"]


def test_other_error_code_from_diet_stands_only_with_a_code_named():
    # An operator may have labelled a message other_error_code; without another code in
    # the text DIET's guess gives way to the next intent, never a 1000 question misread.
    for text in ("pos机报1000咋整", "机器坏了吗"):
        message = parsed(text, intent=INTENT_NAME, confidence=0.8)
        assert message.get("intent")["name"] == "ask_how_to_fix", text
        assert INTENT_NAME not in [r["name"] for r in message.get("intent_ranking")]


def test_a_terminal_model_an_operator_adds_is_no_code_at_the_next_message(tmp_path):
    terminals = tmp_path / "terminals.yml"
    terminals.write_text(TERMINALS.read_text(encoding="utf-8"), encoding="utf-8")
    component = OtherErrorCodeClassifier("1000", terminals, KEEP)
    message = Message(data={"text": "X990", "intent": {"name": "inform", "confidence": 0.9}, "intent_ranking": []})
    component.process([message])
    assert message.get("intent")["name"] == INTENT_NAME
    data = yaml.safe_load(terminals.read_text(encoding="utf-8"))
    data["models"]["pax_x990"] = {**data["models"]["pax_a920"], "name": "PAX X990", "aliases": ["X990"]}
    replacement = tmp_path / "new.yml"
    replacement.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    replacement.replace(terminals)
    message = Message(data={"text": "X990", "intent": {"name": "inform", "confidence": 0.9}, "intent_ranking": []})
    component.process([message])
    assert message.get("intent")["name"] == "inform" and message.get("entities", []) == []

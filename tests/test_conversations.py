"""Whole conversations through the stack ``make run`` starts, on loopback: ``python -m
rasa_server run`` with the trained model (models/pos1000.tar.gz, built by ``make train``), the
action server and the support desk, each by the Procfile's command (tests/harness/stack.py).
The merchant writes over Rasa's REST channel; slots, pauses and events are read and written
through Rasa's HTTP API, as the desk does. Each bot message is compared with the domain's
variation for the merchant's language.
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from tests.harness.desk import DeskProcess
from tests.harness.http import http
from tests.harness.processes import ROOT
from tests.harness.stack import RASA_TOKEN, Stack

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def knowledge_file(tmp_path_factory) -> Path:
    """A copy of data/knowledge/terminals.yml that the action server reads (an operator edits it)."""
    copy = tmp_path_factory.mktemp("knowledge") / "terminals.yml"
    shutil.copy(ROOT / "data" / "knowledge" / "terminals.yml", copy)
    return copy


@pytest.fixture(scope="module")
def bot(tmp_path_factory, knowledge_file) -> Iterator[Stack]:
    """This module's own stack: its tests post incidents, which would reach other modules' merchants."""
    running = Stack(tmp_path_factory.mktemp("conversations"), env={"KNOWLEDGE_FILE": str(knowledge_file)})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def desk(bot) -> DeskProcess:
    return bot.desk


@pytest.fixture(scope="module")
def variations():
    """Response name → {language: text} from the domain the model was trained on."""
    from rasa.shared.core.domain import Domain

    table = {}
    for name, options in Domain.load(str(ROOT / "domain")).responses.items():
        texts = {}
        for option in options:
            conditions = option.get("condition") or []
            language = next((c["value"] for c in conditions if c["name"] == "language"), "zh")
            texts[language] = option.get("text", "")
        table[name] = texts
    return table


class Chat:
    """One merchant's conversation over the REST channel."""

    def __init__(self, bot: Stack, sender: str) -> None:
        self.bot, self.sender = bot, sender

    async def say(self, text: str) -> List[Dict]:
        return self.bot.answers(self.sender, text)

    async def texts(self, text: str) -> List[str]:
        return [message.get("text", "") for message in await self.say(text)]

    async def tracker(self) -> Dict[str, Any]:
        return self.bot.tracker(self.sender)

    async def slot(self, name: str):
        return (await self.tracker())["slots"].get(name)


def rasa_api(bot: Stack, method: str, path: str, body: Any = None) -> Any:
    """Rasa's HTTP API with the stack's token."""
    return http(method, f"{bot.rasa_url}{path}{'&' if '?' in path else '?'}token={RASA_TOKEN}", body)


async def parse(bot: Stack, text: str) -> Dict[str, Any]:
    """What NLU makes of a message (``POST /model/parse``)."""
    return rasa_api(bot, "POST", "/model/parse", {"text": text})


def starts_like(text: str, template: str) -> bool:
    """The bot text is the template up to its first placeholder."""
    return text.startswith(template.split("{")[0])


@pytest.mark.parametrize(
    "text, intent",
    [
        ("pos机报1000咋整", "ask_how_to_fix"),
        ("terminal shows 1000 help", "ask_how_to_fix"),
        ("转人工", "request_human"),
        ("talk to a human", "request_human"),
        ("顾客的钱扣了吗", "ask_affects_transactions"),
        ("what does error 1000 mean", "ask_error_meaning"),
    ],
)
async def test_key_phrases_are_understood(bot, text, intent):
    parsed = await parse(bot, text)
    assert parsed["intent"]["name"] == intent


async def test_each_answer_is_in_the_merchants_language(bot, variations):
    zh, en = Chat(bot, "lang-zh"), Chat(bot, "lang-en")
    assert await zh.texts("1000是什么意思") == [variations["utter_error_meaning"]["zh"]]
    assert await en.texts("what does error 1000 mean") == [variations["utter_error_meaning"]["en"]]
    # A message with no words keeps the language the merchant already uses.
    assert await en.say("/ask_is_hardware") and await en.slot("language") == "en"
    assert await zh.texts("会扣钱吗") == [variations["utter_affects_transactions"]["zh"]]


async def test_zh_whole_diagnostics_then_a_person(bot, desk, variations):
    chat = Chat(bot, "zh-unresolved")
    assert await chat.texts("pos机报1000咋整") == [
        variations["utter_how_to_fix"]["zh"],
        variations["utter_offer_diagnostics"]["zh"],
    ]
    [network] = await chat.say("好")
    assert network["text"] == variations["utter_ask_network_ok"]["zh"]
    # The payload as the widget gets it: single braces, the entity Rasa parses back.
    assert network["buttons"][2]["payload"] == '/inform_not_fixed{"shop_offline": "true"}'

    # An FAQ question in the middle gets its answer and the same step is asked again.
    replies = await chat.texts("对了 手续费怎么收")
    assert replies[-1] == variations["utter_ask_network_ok"]["zh"] and len(replies) == 2

    [model_question] = await chat.say("还是不行")
    assert model_question["text"] == variations["utter_question_terminal_model"]["zh"]
    assert len(model_question["buttons"]) == 6

    [restart] = await chat.texts('/inform{"terminal_model": "pax_a920"}')
    assert starts_like(restart, variations["utter_question_restart_ok"]["zh"])
    assert "(PAX A920)" in restart and "长按右侧电源键3秒" in restart
    # The same inside a step the validation action asks: the question comes once, after the answer.
    replies = await chat.texts("手续费怎么收")
    assert replies[1:] == [restart] and len(replies) == 2

    [server] = await chat.texts("还是报1000")
    assert server == variations["utter_question_server_ok_clear"]["zh"]
    # And inside the step whose question checks the status sources and stores the result.
    replies = await chat.texts("会不会扣两次钱")
    assert replies == [variations["utter_affects_transactions"]["zh"], server]

    [version] = await chat.texts("不行")
    assert starts_like(version, variations["utter_question_software_version"]["zh"])
    assert "设置 → 关于本机" in version

    replies = await chat.texts("版本3.2.1")
    assert replies == [
        "3.2.1 已经是这个型号的最新版本，不需要更新。",
        variations["utter_diagnostics_unresolved"]["zh"],
        variations["utter_ask_merchant_ref"]["zh"],
    ]
    assert await chat.slot("diagnostics_outcome") == "unresolved"

    # The handoff asks only for what support still needs, then escalates and pauses.
    assert await chat.texts("商户号898310048160123") == [variations["utter_ask_contact"]["zh"]]
    assert await chat.texts("13812345678") == [variations["utter_ask_problem_summary"]["zh"]]
    [escalated] = await chat.texts("从早上开始刷卡都报1000")
    ticket = await chat.slot("ticket")
    assert escalated.startswith(f"您的工单号是 {ticket}。人工客服会在 ")
    assert (await chat.tracker())["paused"] is True
    [case] = desk.call("GET", f"/api/escalations?ticket={ticket}")["escalations"]
    assert case["merchant_id"] == "898310048160123" and case["contact"] == "13812345678"
    assert case["priority"] == "high" and len(case["diagnostics"]) == 4
    # While paused the bot stays quiet.
    assert await chat.texts("还在吗") == []


async def test_en_whole_diagnostics_fixed_by_the_update(bot, variations):
    chat = Chat(bot, "en-software")
    assert await chat.texts("walk me through the checks") == [variations["utter_ask_network_ok"]["en"]]
    assert await chat.texts("still 1000") == [variations["utter_question_terminal_model"]["en"]]
    [restart] = await chat.texts("its a newland N910")
    assert "(新大陆 N910)" in restart and "Hold the power key on top" in restart
    assert await chat.texts("no still broken") == [variations["utter_question_server_ok_clear"]["en"]]
    [version] = await chat.texts("nope")
    assert "Settings → About device → Application version." in version
    [update] = await chat.texts("2.1.0")
    assert update.startswith("Version 2.1.0 is older than the latest, 2.8.0")
    replies = await chat.say("updated and it works now")
    assert [m.get("text") for m in replies] == [
        "Great, the terminal works again! It was fixed at the software update step.",
        variations["utter_prevention"]["en"],
        variations["utter_ask_rating"]["en"],
    ]
    assert len(replies[-1]["buttons"]) == 5
    assert await chat.slot("fixed_step") == "software"
    assert await chat.texts('/rate{"rating": "5"}') == [variations["utter_thanks_rating"]["en"]]
    assert await chat.slot("rating") == 5.0


async def test_known_outage_is_told_first_then_ends_the_checks(bot, desk, variations):
    incident = desk.call(
        "POST",
        "/api/incidents",
        {
            "region": "全国",
            "message": {"zh": "支付网关维护中。", "en": "Payment gateway maintenance."},
            "expected_end": "2099-11-25T14:00:00+08:00",
        },
    )
    chat = Chat(bot, "zh-incident")
    try:
        # Told before any check, with the choices; the merchant goes on with the checks.
        [told] = await chat.say("开始排查")
        assert "支付网关维护中。" in told["text"] and "11-25 14:00" in told["text"]
        assert [b["payload"] for b in told["buttons"]][1] == "/start_diagnostics"
        assert await chat.slot("incident_match") == "told"
        assert await chat.texts("/start_diagnostics") == [variations["utter_ask_network_ok"]["zh"]]
        await chat.say("/inform_not_fixed")
        await chat.say("/dont_know")
        [server] = await chat.texts("/inform_not_fixed")
        assert "支付网关维护中。" in server and "11-25 14:00" in server
        [wait] = await chat.texts("还是不行")
        assert starts_like(wait, variations["utter_incident_wait"]["zh"])
        assert await chat.slot("diagnostics_outcome") == "known_incident"
    finally:
        desk.call("POST", f"/api/incidents/{incident['id']}/close")


@pytest.mark.parametrize(
    "language, report, text",
    [
        ("zh", "pos机报1000怎么办", "支付网关维护中。"),
        ("en", "my terminal shows error 1000", "Payment gateway maintenance."),
    ],
)
async def test_known_outage_is_told_at_the_first_report_and_not_again_with_the_checks(bot, desk, variations, language, report, text):
    incident = desk.call(
        "POST",
        "/api/incidents",
        {"message": {"zh": "支付网关维护中。", "en": "Payment gateway maintenance."}, "expected_end": "2099-11-25T14:00:00+08:00"},
    )
    chat = Chat(bot, f"{language}-incident-at-report")
    try:
        # The first answer is the incident with its choices: no fix steps before it.
        [told] = await chat.say(report)
        assert starts_like(told["text"], variations["utter_incident_active"][language])
        assert text in told["text"] and "11-25 14:00" in told["text"]
        assert [b["payload"] for b in told["buttons"]][:3] == ["/subscribe_incident", "/start_diagnostics", "/request_human"]
        assert await chat.slot("incident_told") == incident["id"]
        # Going on with the checks: the first step, not the incident a second time.
        assert await chat.texts("/start_diagnostics") == [variations["utter_ask_network_ok"][language]]
    finally:
        desk.call("POST", f"/api/incidents/{incident['id']}/close")


async def test_a_region_incident_asks_the_region_at_the_report_then_answers_as_usual(bot, desk, variations):
    incident = desk.call(
        "POST",
        "/api/incidents",
        {"scope": {"regions": ["4403"]}, "message": {"zh": "深圳地区网关故障。", "en": "Shenzhen gateway outage."}},
    )
    chat = Chat(bot, "zh-incident-region-at-report")
    try:
        [question] = await chat.say("pos机报1000咋整")
        assert question["text"] == variations["utter_question_region"]["zh"]
        # Elsewhere: exactly the answer without an incident, the steps and the offer.
        assert await chat.texts('/inform{"region": "other"}') == [
            variations["utter_how_to_fix"]["zh"],
            variations["utter_offer_diagnostics"]["zh"],
        ]
        assert await chat.texts("好") == [variations["utter_ask_network_ok"]["zh"]]
    finally:
        desk.call("POST", f"/api/incidents/{incident['id']}/close")


@pytest.mark.parametrize(
    "language, start, complaint, still_broken, next_question",
    [
        ("zh", "开始排查", "隔壁装修吵死了", "还是不行", "utter_question_terminal_model"),
        ("zh", "开始排查", "今天生意不好", "还是不行", "utter_question_terminal_model"),
        ("zh", "开始排查", "外面堵车堵得要命", "还是不行", "utter_question_terminal_model"),
        ("en", "walk me through the checks", "my boss is yelling at me", "still 1000", "utter_question_terminal_model"),
        ("en", "walk me through the checks", "ugh the music next door is so loud", "still 1000", "utter_question_terminal_model"),
    ],
)
async def test_an_unrelated_complaint_in_the_checks_is_not_it_works_now(
    bot, variations, language, start, complaint, still_broken, next_question
):
    """Issue 18: a complaint about something else, typed at "does it work now?", is no
    answer: the step is not marked fixed and the same question is asked again."""
    sender = f"complaint-{language}-{zlib.crc32(complaint.encode())}"
    chat = Chat(bot, sender)
    assert await chat.texts(start) == [variations["utter_ask_network_ok"][language]]
    replies = await chat.texts(complaint)
    assert await chat.slot("network_ok") is None and await chat.slot("fixed_step") is None
    resolved = variations["utter_diagnostics_resolved"][language].split("{")[0]
    assert not any(text.startswith(resolved) for text in replies)
    assert replies[-1] == variations["utter_ask_network_ok"][language]
    tracker = await chat.tracker()
    assert tracker["active_loop"]["name"] == "diagnostics_form"
    assert tracker["slots"]["requested_slot"] == "network_ok"
    # The checks go on: a real answer still moves to the next step.
    [question] = await chat.say(still_broken)
    assert question["text"] == variations[next_question][language]
    assert await chat.slot("network_ok") is False


async def test_human_leaves_the_checks(bot, variations):
    chat = Chat(bot, "en-human")
    await chat.say("check it step by step")
    assert await chat.texts("human please") == [variations["utter_ask_merchant_ref"]["en"]]
    assert (await chat.tracker())["active_loop"]["name"] == "handoff_form"
    assert await chat.texts("cancel, never mind") == [variations["utter_handoff_cancelled"]["en"]]


async def test_low_confidence_offers_topics_then_listens(bot, variations):
    chat = Chat(bot, "zh-clarify")
    # No likely topic behind a bare fallback: action_clarify asks to rephrase.
    assert await chat.texts("/nlu_fallback") == [variations["utter_default"]["zh"]]
    assert (await chat.tracker())["latest_action_name"] == "action_listen"
    assert await chat.texts("今天天气怎么样") == [variations["utter_out_of_scope"]["zh"]]


# --- another error code than 1000 -------------------------------------------------------


@pytest.mark.parametrize(
    "text, intent, code",
    [
        ("pos机报错1001是什么意思", "other_error_code", "1001"),
        ("报错E05怎么办", "other_error_code", "E05"),
        ("what does error 1001 mean", "other_error_code", "1001"),
        ("2023年买的A920今天报1000怎么办", "ask_how_to_fix", "1000"),
        ("my 2023 PAX A920 shows error 1000, how do I fix it", "ask_how_to_fix", "1000"),
    ],
)
async def test_another_code_is_told_apart_from_1000(bot, text, intent, code):
    parsed = await parse(bot, text)
    assert parsed["intent"]["name"] == intent
    assert [e["value"] for e in parsed["entities"] if e["entity"] == "error_code"] == [code]


async def test_another_code_is_named_back_then_a_person_records_it(bot, desk, variations):
    chat = Chat(bot, "zh-other-code")
    [answer] = await chat.say("pos机报错1001是什么意思")
    assert starts_like(answer["text"], variations["utter_other_error_code"]["zh"])
    assert "1001 和 1000 不是同一个错误码" in answer["text"] and "错误码1000一般表示" not in answer["text"]
    assert [b["payload"] for b in answer["buttons"]] == ["/request_human"]
    assert await chat.texts("/request_human") == [variations["utter_ask_merchant_ref"]["zh"]]
    assert await chat.texts("商户号898310048160123") == [variations["utter_ask_contact"]["zh"]]
    assert await chat.texts("13812345678") == [variations["utter_ask_problem_summary"]["zh"]]
    await chat.texts("刷卡一直报1001")
    [case] = desk.call("GET", f"/api/escalations?ticket={await chat.slot('ticket')}")["escalations"]
    assert case["error_code"] == "1001"


async def test_a_listed_code_is_answered_from_the_knowledge_data(bot, variations):
    chat = Chat(bot, "en-listed-code")
    [answer] = await chat.texts("my card machine says code 55, is it broken")
    assert starts_like(answer, variations["utter_other_error_code_listed"]["en"])
    assert "incorrect PIN" in answer and "Error 1000 usually means" not in answer


# --- error 1000 comes back after a finished run ------------------------------------------


async def desk_resumes(bot: Stack, sender: str, closing: str, question: Optional[Dict] = None) -> None:
    """The events the desk appends when an agent resolves a case (support_desk/relay.py):
    resume, the closing message, the rating question with its buttons, action_listen."""
    events: List[Dict[str, Any]] = [{"event": "resume"}, {"event": "bot", "text": closing}]
    if question:
        events.append({"event": "bot", "text": question["text"], "data": {"buttons": question["buttons"]}})
    events.append({"event": "action", "name": "action_listen"})
    rasa_api(bot, "POST", f"/conversations/{sender}/tracker/events", events)


async def age_conversation(bot: Stack, sender: str, seconds: float) -> None:
    """Move every event of the conversation ``seconds`` into the past (a later day)."""
    events = rasa_api(bot, "GET", f"/conversations/{sender}/tracker?include_events=ALL")["events"]
    for event in events:
        event["timestamp"] -= seconds
    rasa_api(bot, "PUT", f"/conversations/{sender}/tracker/events", events)


AGENT_QUESTION = {
    "text": "How would you rate the agent's help?",
    "buttons": [{"title": f"{n} ⭐", "payload": f'/rate_agent{{"agent_rating": "{n}"}}'} for n in range(1, 6)],
}


async def test_fixed_then_error_back_starts_the_checks_again(bot, desk, variations):
    chat = Chat(bot, "zh-repeat-fixed")
    fixed_before = desk.call("GET", "/api/stats")["fixed_by_step"]["network"]
    assert await chat.texts("开始排查") == [variations["utter_ask_network_ok"]["zh"]]
    replies = await chat.texts("好了能刷了")
    assert replies[0] == "太好了，POS机恢复正常了！是在“检查网络”这一步解决的。"
    assert await chat.texts('/rate{"rating": "5"}') == [variations["utter_thanks_rating"]["zh"]]

    # The reported case: the bot used to answer "fixed at the network step" at once.
    assert await chat.texts("又报1000了，帮我再排查一次") == [variations["utter_ask_network_ok"]["zh"]]
    assert await chat.slot("fixed_step") is None and await chat.slot("rating") is None
    assert await chat.texts("还是不行") == [variations["utter_question_terminal_model"]["zh"]]
    await chat.say('/inform{"terminal_model": "pax_a920"}')
    replies = await chat.texts("好了")
    assert replies[0] == "太好了，POS机恢复正常了！是在“重启POS机”这一步解决的。"
    # Both runs reached the desk's stats.
    stats = desk.call("GET", "/api/stats")["fixed_by_step"]
    assert stats["network"] == fixed_before + 1 and stats["restart"] >= 1


async def test_resolved_by_an_agent_then_again_and_next_day_again(bot, desk, variations):
    sender = "en-repeat-handoff"
    chat = Chat(bot, sender)
    assert await chat.texts("human please") == [variations["utter_ask_merchant_ref"]["en"]]
    assert await chat.texts("merchant id is 898440027315906") == [variations["utter_ask_contact"]["en"]]
    assert await chat.texts("13812345678") == [variations["utter_ask_problem_summary"]["en"]]
    await chat.say("every card payment fails with 1000 since this morning")
    first = await chat.slot("ticket")
    [case] = desk.call("GET", f"/api/escalations?ticket={first}")["escalations"]
    desk.call("POST", f"/api/escalations/{case['id']}/resolve", {"note": "router restarted"})
    await desk_resumes(bot, sender, f"Case {first} is resolved.", AGENT_QUESTION)

    assert await chat.texts('/rate_agent{"agent_rating": "5"}') == [variations["utter_thanks_agent_rating"]["en"]]
    assert await chat.slot("agent_rating") == 5.0

    # Error 1000 again: the checks from step 1, then a person without the merchant number
    # or the phone asked again.
    assert await chat.texts("the 1000 error is back today") == [
        variations["utter_how_to_fix"]["en"],
        variations["utter_offer_diagnostics"]["en"],
    ]
    assert await chat.texts("yes") == [variations["utter_ask_network_ok"]["en"]]
    assert await chat.texts("still 1000") == [variations["utter_question_terminal_model"]["en"]]
    assert await chat.texts("talk to a human") == [variations["utter_ask_problem_summary"]["en"]]
    [escalated] = await chat.texts("still 1000 after the network check")
    second = await chat.slot("ticket")
    assert second != first and second in escalated
    [case] = desk.call("GET", f"/api/escalations?ticket={second}")["escalations"]
    assert case["merchant_id"] == "898440027315906" and case["contact"] == "13812345678"
    assert case["diagnostics"] == [{"step": "network", "outcome": "not_fixed"}]
    desk.call("POST", f"/api/escalations/{case['id']}/resolve", {"note": "replaced the SIM"})
    await desk_resumes(bot, sender, f"Case {second} is resolved.")

    # The next day (past session_expiration_time): a new session, the checks from step 1.
    await age_conversation(bot, sender, 3 * 3600)
    assert await chat.texts("walk me through the checks again") == [variations["utter_ask_network_ok"]["en"]]
    events = rasa_api(bot, "GET", f"/conversations/{sender}/tracker?include_events=ALL")["events"]
    assert [e["event"] for e in events].count("session_started") == 2
    assert await chat.texts("human please") == [variations["utter_ask_problem_summary"]["en"]]


# --- knowledge edited by an operator ----------------------------------------------------


async def test_an_operator_edit_is_in_the_next_answer_without_a_restart(bot, knowledge_file, variations):
    from support_desk.knowledge_edit import KnowledgeFiles, terminal_from_form

    shipped = knowledge_file.read_bytes()
    files = KnowledgeFiles(knowledge_file, ROOT / "data" / "knowledge" / "regions.yml")
    [entry] = [m for m in files.terminals()[0] if m.key == "pax_a920"]
    form = {"key": entry.key, "name": entry.name, "aliases": ", ".join(entry.aliases), "latest_version": "3.3.0"}
    form.update({f"{step}_{lang}": text for step, texts in entry.steps.items() for lang, text in texts.items()})
    chat = Chat(bot, "zh-knowledge-edit")
    await chat.say("开始排查")
    for answer in ("还是不行", '/inform{"terminal_model": "pax_a920"}', "还是不行", "不行"):
        await chat.say(answer)
    try:
        files.save_terminal(terminal_from_form(form), files.terminals()[1])
        [outdated] = await chat.texts("版本3.2.1")
        assert outdated.startswith("您的版本 3.2.1 比最新版 3.3.0 旧")
    finally:
        knowledge_file.write_bytes(shipped)

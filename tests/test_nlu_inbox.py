"""The NLU inbox's store on SQLite and on a real PostgreSQL server: what each reason
captures from realistic event batches, grouping and masking, the clarifying question's
button as a label, and labelling: the reviewed file Rasa reads, stale versions, unknown
intents, held-out texts and texts the training data has already."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from support_desk.nlu_data import domain_intents, normalised, reviewed_yaml
from support_desk.nlu_inbox import HeldOut, NluInbox, StaleVersion
from support_desk.schema import audit_log, nlu_inbox, nlu_recent
from support_desk.validation import Invalid
from tests.harness.desk_app import desk_settings

ROOT = Path(__file__).resolve().parent.parent
CARD, PHONE = "4111 1111 1111 1111", "13812345678"


@pytest.fixture
def inbox(store, tmp_path):
    settings = replace(desk_settings("sqlite://"), nlu_reviewed_file=tmp_path / "nlu" / "reviewed.yml")
    return NluInbox(store, settings)


def nlu(intent, confidence, ranking=(), faq=None, clicked=False, language=None):
    return {
        "intent": intent,
        "confidence": confidence,
        "ranking": [{"name": n, "confidence": c} for n, c in ranking] or [{"name": intent, "confidence": confidence}],
        "faq": faq,
        "language": language,
        "clicked": clicked,
    }


def said(sender, text, ts, parsed):
    return {"sender_id": sender, "event": "user", "text": text, "timestamp": ts, "nlu": parsed}


def bot(sender, text, ts, response=None):
    return {"sender_id": sender, "event": "bot", "text": text, "timestamp": ts, **({"utter_action": response} if response else {})}


async def entries(inbox, **options):
    return (await inbox.page(**options))["items"]


async def every_stored_text(store):
    """Everything the inbox's two tables hold, as one string."""
    async with store.engine.connect() as conn:
        rows = [dict(r) for t in (nlu_inbox, nlu_recent) for r in (await conn.execute(sa.select(t))).mappings()]
    return repr(rows)


def test_near_duplicates_share_a_key():
    assert normalised("商户号 123456789012345 报1000！") == normalised("商户号123456789012346报１０００")
    assert normalised("POS  shows 1000?") == normalised("pos shows 1000") != normalised("pos shows")
    assert normalised("…！？") == ""
    assert normalised("电话 138****5678 卡 411111******1111") == normalised(f"电话{PHONE}卡{CARD}")


async def test_variants_group_and_card_and_phone_numbers_never_reach_the_tables(inbox, store):
    now = time.time()
    low = nlu("ask_how_to_fix", 0.31, [("ask_how_to_fix", 0.31), ("ask_error_meaning", 0.3), ("greet", 0.1)])
    await inbox.take_events(
        [
            said("shop-1", f"商户号 123456789012345 卡 {CARD} 电话 {PHONE} 一直报1000", now, low),
            said("shop-2", f"商户号123456789012399卡{CARD}电话{PHONE}一直报１０００！", now + 1, low),
        ]
    )
    [entry] = await entries(inbox)
    assert entry["count"] == 2 and entry["reasons"] == ["low_confidence"]
    assert entry["text"] == "商户号 123456789012345 卡 411111******1111 电话 138****5678 一直报1000"
    assert entry["bot_intent"] == "ask_how_to_fix" and entry["bot_confidence"] == pytest.approx(0.31)
    assert [r["name"] for r in entry["ranking"]] == ["ask_how_to_fix", "ask_error_meaning", "greet"]
    stored = await every_stored_text(store)
    assert "4111 1111 1111 1111" not in stored and "4111111111111111" not in stored and PHONE not in stored


async def test_each_reason_is_captured_from_a_batch_and_a_confident_message_is_not(inbox):
    now = time.time()
    await inbox.take_events(
        [
            said("a", "pos机报1000咋整", now, nlu("ask_how_to_fix", 0.97)),  # sure: not listed
            said("a", "机器冒烟了", now + 1, nlu("nlu_fallback", 0.5, [("nlu_fallback", 0.5), ("ask_is_hardware", 0.42)])),
            said("b", "what is the weather", now + 2, nlu("out_of_scope", 0.9, language="en")),
            said("c", "办个卡机子", now + 3, nlu("faq", 0.45, [("faq", 0.45)], faq="faq/apply_pos")),
            said("d", "🙂", now + 4, nlu("greet", 0.2)),  # no words: nothing to label
            said("e", "🎤 机器黑屏了怎么办", now + 5, nlu("ask_how_to_fix", 0.4)),  # a voice message: its words
        ]
    )
    found = {e["text"]: e for e in await entries(inbox)}
    assert set(found) == {"机器冒烟了", "what is the weather", "办个卡机子", "机器黑屏了怎么办"}
    assert found["机器冒烟了"]["reasons"] == ["low_confidence", "fallback"]
    assert found["机器冒烟了"]["bot_intent"] == "ask_is_hardware"  # the guess behind the fallback
    assert found["what is the weather"]["reasons"] == ["out_of_scope"] and found["what is the weather"]["language"] == "en"
    assert (found["办个卡机子"]["bot_intent"], found["办个卡机子"]["reasons"]) == ("faq/apply_pos", ["low_confidence"])


async def test_a_batch_sent_again_counts_once(inbox):
    batch = [said("a", "机器一直滴滴响", time.time(), nlu("ask_how_to_fix", 0.2))]
    await inbox.take_events(batch)
    await inbox.take_events(batch)
    assert [e["count"] for e in await entries(inbox)] == [1]


async def test_the_bots_turn_costs_the_inbox_no_database_work(inbox, store):
    """Most of the broker's batches are the bot's turn (answers, actions, slots): the inbox
    reads them without a statement; the old recent messages are deleted now and then, not
    on every batch."""
    statements = []

    def seen(conn, cursor, statement, *rest):
        statements.append(statement)

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        now = time.time()
        turn = [
            bot("a", "请先重启终端", now),
            {"sender_id": "a", "event": "action", "name": "action_listen", "timestamp": now},
            {"sender_id": "a", "event": "slot", "name": "step", "value": "restart", "timestamp": now},
            {"sender_id": "a", "event": "user", "text": "no nlu here", "timestamp": now},
        ]
        assert await inbox.take_events(turn) == 0
        assert statements == []
        await inbox.take_events([said("a", "机器一直滴滴响", now, nlu("ask_how_to_fix", 0.2))])
        deletes = sum(statement.lstrip().upper().startswith("DELETE") for statement in statements)
        await inbox.take_events([said("a", "还是不行啊", now + 1, nlu("inform_not_fixed", 0.3))])
        assert deletes == 1 and sum(statement.lstrip().upper().startswith("DELETE") for statement in statements) == 1
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", seen)


async def test_the_button_chosen_on_the_clarifying_question_is_the_suggested_label(inbox):
    now = time.time()
    unsure = nlu("nlu_fallback", 0.5, [("nlu_fallback", 0.5), ("ask_error_meaning", 0.35), ("ask_how_to_fix", 0.33)])
    # The question and the click arrive in a later batch than the message.
    await inbox.take_events([said("m-1", "1000是不是要换机器", now, unsure)])
    await inbox.take_events(
        [
            bot("m-1", "不太确定您的意思，是下面哪一个？", now + 1, "utter_clarify"),
            said("m-1", "怎么解决1000", now + 2, nlu("ask_how_to_fix", 1.0, clicked=True)),
        ]
    )
    [entry] = await entries(inbox)
    assert entry["text"] == "1000是不是要换机器" and entry["count"] == 1
    assert entry["reasons"] == ["low_confidence", "clarified", "fallback"] and entry["suggested"] == "ask_how_to_fix"
    # A click that answers no clarifying question labels nothing.
    await inbox.take_events([said("m-1", "✅ 好了", now + 3, nlu("inform_fixed", 1.0, clicked=True))])
    assert len(await entries(inbox)) == 1


async def test_rasas_own_events_through_the_broker_fill_the_inbox(inbox):
    """The contract between rasa_server.desk_events and the inbox: tracker events as Rasa 3.6
    publishes them (parse_data, a BotUttered's metadata), through the broker's filter."""
    from rasa_server.desk_events import DeskEventBroker

    broker = DeskEventBroker("http://127.0.0.1:9", None)
    now = time.time()
    ranking = [
        {"name": "nlu_fallback", "confidence": 0.5},
        {"name": "ask_is_hardware", "confidence": 0.41},
        {"name": "faq", "confidence": 0.3},
    ]
    tracker_events = [
        {
            "event": "user",
            "sender_id": "wx-1",
            "timestamp": now,
            "text": "机子是不是坏了 电话13812345678",
            "parse_data": {
                "intent": {"name": "nlu_fallback", "confidence": 0.5},
                "entities": [{"entity": "language", "value": "zh"}],
                "intent_ranking": ranking,
                "response_selector": {"faq": {"response": {"intent_response_key": "faq/replace_pos"}}},
            },
        },
        {"event": "action", "sender_id": "wx-1", "timestamp": now + 0.1, "name": "action_clarify"},
        {
            "event": "bot",
            "sender_id": "wx-1",
            "timestamp": now + 0.2,
            "text": "不太确定您的意思，是下面哪一个？",
            "data": {"buttons": [{"title": "是不是硬件坏了", "payload": "/ask_is_hardware"}]},
            "metadata": {"utter_action": "utter_clarify"},
        },
        {
            "event": "user",
            "sender_id": "wx-1",
            "timestamp": now + 5,
            "text": "/ask_is_hardware",
            "parse_data": {"intent": {"name": "ask_is_hardware", "confidence": 1.0}, "entities": [], "intent_ranking": []},
        },
    ]
    forwarded = [kept for kept in map(broker._for_desk, tracker_events) if kept is not None]
    await inbox.take_events(forwarded)
    [entry] = await entries(inbox)
    assert entry["text"] == "机子是不是坏了 电话138****5678" and entry["language"] == "zh"
    assert (entry["bot_intent"], entry["suggested"]) == ("ask_is_hardware", "ask_is_hardware")
    assert entry["reasons"] == ["low_confidence", "clarified", "fallback"]


async def test_the_typed_messages_before_the_request_for_a_person_are_listed_at_the_handoff(inbox):
    now = time.time()
    sure = nlu("ask_how_to_fix", 0.95)
    await inbox.take_events(
        [
            said("m-2", "你好", now, nlu("greet", 0.99)),
            said("m-2", "小票打不出来", now + 1, sure),
            said("m-2", "屏幕一直转圈", now + 2, sure),
            said("m-2", "✅ 好了", now + 3, nlu("inform_fixed", 1.0, clicked=True)),
            said("m-2", "转人工", now + 4, nlu("request_human", 0.99)),
            said("m-2", "898440153990123", now + 5, nlu("inform", 0.9)),  # the handoff form's answers
            said("m-2", PHONE, now + 6, nlu("inform", 0.9)),
        ]
    )
    assert await entries(inbox) == []
    await inbox.take_events([{"sender_id": "m-2", "event": "pause", "timestamp": now + 7}])
    found = await entries(inbox)
    assert sorted(e["text"] for e in found) == ["小票打不出来", "屏幕一直转圈"]
    assert all(e["reasons"] == ["before_handoff"] and e["bot_intent"] == "ask_how_to_fix" for e in found)


async def test_newest_or_most_frequent_first_a_page_at_a_time(inbox):
    now = time.time()
    events = [said("a", f"第{n}个问题 {'嗯' * n}", now + n, nlu("ask_how_to_fix", 0.1)) for n in range(5)]
    events += [said("b", "第0个问题", now + 10 + n, nlu("ask_how_to_fix", 0.1)) for n in range(3)]  # seen 4 times
    await inbox.take_events(events)
    first = await inbox.page(order="newest", limit=2)
    second = await inbox.page(order="newest", cursor=first["next_cursor"], limit=2)
    third = await inbox.page(order="newest", cursor=second["next_cursor"], limit=2)
    newest = [e["text"] for page in (first, second, third) for e in page["items"]]
    assert newest == ["第0个问题", "第4个问题 嗯嗯嗯嗯", "第3个问题 嗯嗯嗯", "第2个问题 嗯嗯", "第1个问题 嗯"]
    assert third["next_cursor"] is None
    frequent = await inbox.page(order="frequent", limit=1)
    assert frequent["items"][0]["count"] == 4
    with pytest.raises(Invalid):
        await inbox.page(order="frequent", cursor=first["next_cursor"])  # another order's cursor
    with pytest.raises(Invalid):
        await inbox.page(cursor="bm90LWEtY3Vyc29y")


async def listed(inbox, *texts, sender="m-9"):
    now = time.time()
    await inbox.take_events([said(sender, text, now + n, nlu("ask_error_meaning", 0.2)) for n, text in enumerate(texts)])
    return {e["text"]: e for e in await entries(inbox)}


def load_with_rasa(path: Path):
    from rasa.shared.nlu.training_data.loading import load_data

    return load_data(str(path))


async def test_labels_are_written_as_rasa_training_data_and_audited(inbox, store):
    found = await listed(inbox, "机器显示1000，卡住了", "怎么申请一台新机器", "today is sunny", "asdfgh")
    path = inbox.settings.nlu_reviewed_file
    await inbox.label(found["机器显示1000，卡住了"]["id"], 1, "zhao", intent="ask_how_to_fix")
    await inbox.label(found["怎么申请一台新机器"]["id"], 1, "zhao", intent="faq/apply_pos")
    await inbox.label(found["today is sunny"]["id"], 1, "zhao", action="out_of_scope")
    ignored = await inbox.label(found["asdfgh"]["id"], 1, "zhao", action="ignore")
    assert (ignored["status"], ignored["label"], ignored["version"], ignored["reviewed_by"]) == ("ignored", None, 2, "zhao")
    data = load_with_rasa(path)
    examples = {(m.get("intent"), m.get("text")) for m in data.intent_examples}
    assert examples == {("ask_how_to_fix", "机器显示1000，卡住了"), ("faq", "怎么申请一台新机器"), ("out_of_scope", "today is sunny")}
    assert {m.get("intent_response_key") for m in data.intent_examples if m.get("intent") == "faq"} == {"faq/apply_pos"}
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["version"] == "3.1"
    assert (await entries(inbox)) == []  # nothing left to review
    assert len(await entries(inbox, status="labelled")) == 2
    # A correction moves the example; ignoring it takes it out of the file.
    corrected = await inbox.label(found["机器显示1000，卡住了"]["id"], 2, "li", intent="ask_error_meaning")
    assert corrected["label"] == "ask_error_meaning" and corrected["version"] == 3
    await inbox.label(found["怎么申请一台新机器"]["id"], 2, "li", action="ignore")
    assert {(m.get("intent"), m.get("text")) for m in load_with_rasa(path).intent_examples} == {
        ("ask_error_meaning", "机器显示1000，卡住了"),
        ("out_of_scope", "today is sunny"),
    }
    async with store.engine.connect() as conn:
        trail = [dict(r) for r in (await conn.execute(sa.select(audit_log).order_by(audit_log.c.id))).mappings()]
    assert [(r["actor"], r["action"], r["detail"]["intent"]) for r in trail] == [
        ("zhao", "nlu.label", "ask_how_to_fix"),
        ("zhao", "nlu.label", "faq/apply_pos"),
        ("zhao", "nlu.label", "out_of_scope"),
        ("zhao", "nlu.label", None),
        ("li", "nlu.label", "ask_error_meaning"),
        ("li", "nlu.label", None),
    ]
    assert trail[0]["target"] == f"nlu:{found['机器显示1000，卡住了']['id']}"


async def nothing_changed(inbox, store, before_file, entry):
    path = inbox.settings.nlu_reviewed_file
    assert (path.read_text(encoding="utf-8") if path.exists() else None) == before_file
    assert await inbox.get(entry["id"]) == entry
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar() == 1


async def test_a_stale_version_an_unknown_intent_or_a_held_out_text_change_nothing(inbox, store):
    heldout = yaml.safe_load((ROOT / "tests" / "nlu_heldout" / "zh.yml").read_text(encoding="utf-8"))
    secret = heldout["nlu"][0]["examples"].splitlines()[0][2:]
    found = await listed(inbox, "机器又报错", secret)
    await inbox.label(found["机器又报错"]["id"], 1, "zhao", intent="ask_how_to_fix")
    before = inbox.settings.nlu_reviewed_file.read_text(encoding="utf-8")
    entry = await inbox.get(found["机器又报错"]["id"])
    with pytest.raises(StaleVersion):
        await inbox.label(entry["id"], 1, "li", intent="greet")  # zhao's label made it version 2
    for bad in ("ask_the_moon", "faq", "faq/unknown_key", "ask_how_to_fix\n- intent: greet", ""):
        with pytest.raises(Invalid):
            await inbox.label(entry["id"], 2, "li", intent=bad)
    with pytest.raises(Invalid):
        await inbox.label(entry["id"], 2, "li", action="delete")
    await nothing_changed(inbox, store, before, entry)
    secret_entry = await inbox.get(found[secret]["id"])
    for label in ({"intent": "ask_error_meaning"}, {"action": "out_of_scope"}):
        with pytest.raises(HeldOut):
            await inbox.label(secret_entry["id"], 1, "li", **label)
    await nothing_changed(inbox, store, before, entry)
    assert (await inbox.get(secret_entry["id"]))["status"] == "new"


async def test_a_reviewed_file_that_cannot_be_written_keeps_no_label(inbox, store, monkeypatch):
    from support_desk import nlu_inbox as module

    found = await listed(inbox, "小票打印不出来")
    entry = found["小票打印不出来"]

    def full_disk(path, content):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "write_atomically", full_disk)
    with pytest.raises(OSError):
        await inbox.label(entry["id"], 1, "zhao", intent="ask_how_to_fix")
    assert await inbox.get(entry["id"]) == entry and not inbox.settings.nlu_reviewed_file.exists()
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar() == 0


async def test_two_operators_labelling_one_entry_at_once_get_one_label_and_one_conflict(inbox):
    found = await listed(inbox, "刷不了卡")
    item = found["刷不了卡"]["id"]
    results = await asyncio.gather(
        inbox.label(item, 1, "zhao", intent="ask_how_to_fix"),
        inbox.label(item, 1, "li", intent="ask_error_meaning"),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["StaleVersion", "dict"]
    [winner] = [r for r in results if isinstance(r, dict)]
    [example] = load_with_rasa(inbox.settings.nlu_reviewed_file).intent_examples
    assert example.get("intent") == winner["label"] and (await inbox.get(item))["version"] == 2


async def test_a_text_the_training_data_has_is_reviewed_but_not_written_again(inbox):
    training = yaml.safe_load((ROOT / "data" / "nlu" / "faq.yml").read_text(encoding="utf-8"))
    known = training["nlu"][0]["examples"].splitlines()[0][2:]  # "pos机咋办理啊"
    found = await listed(inbox, f"{known.upper()}！！", "另一句新话")
    done = await inbox.label(found[f"{known.upper()}！！"]["id"], 1, "zhao", intent="faq/apply_pos")
    assert done["status"] == "labelled" and done["in_training"] is True
    await inbox.label(found["另一句新话"]["id"], 1, "zhao", intent="faq/apply_pos")
    assert [m.get("text") for m in load_with_rasa(inbox.settings.nlu_reviewed_file).intent_examples] == ["另一句新话"]


def test_the_picker_offers_the_domains_intents_with_the_faq_keys():
    intents = domain_intents(ROOT / "domain")
    assert {"ask_how_to_fix", "out_of_scope", "subscribe_incident", "faq/apply_pos", "faq/get_help"} <= set(intents)
    assert "faq" not in intents and intents == sorted(intents)


def test_a_merchants_brackets_are_not_read_as_entity_annotations(tmp_path):
    path = tmp_path / "reviewed.yml"
    path.write_text(reviewed_yaml([("inform", "我的商户号是[898440153990123](merchant_id)\n还报错{x}")]), encoding="utf-8")
    [example] = load_with_rasa(path).intent_examples
    assert example.get("entities") in (None, []) and example.get("text") == "我的商户号是[898440153990123] (merchant_id) 还报错{x}"


def test_no_labels_is_still_training_data_rasa_reads(tmp_path):
    path = tmp_path / "reviewed.yml"
    path.write_text(reviewed_yaml([]), encoding="utf-8")
    assert load_with_rasa(path).intent_examples == []


@pytest.mark.process  # a fresh interpreter loads Rasa's validator (~10 s)
def test_the_projects_validation_accepts_a_reviewed_file_of_every_kind_of_label(tmp_path):
    import shutil
    import subprocess
    import sys

    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    labels = [
        ("ask_how_to_fix", "机器一直显示1000 卡住了怎么弄"),
        ("faq/apply_pos", "想弄台新刷卡机咋整"),
        ("out_of_scope", "what is the weather today"),
    ]
    (data / "nlu" / "reviewed.yml").write_text(reviewed_yaml(labels), encoding="utf-8")
    command = [sys.executable, "scripts/validate_data.py", "--domain", "domain", "--data", str(data), "--config", "config.yml"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_no_label_names_an_intent_a_pipeline_rule_sets():
    from nlu_components.error_codes import INTENT_NAME
    from support_desk.nlu_data import RULE_INTENTS

    assert RULE_INTENTS == {INTENT_NAME}
    assert INTENT_NAME not in domain_intents(Path("domain")) and "ask_how_to_fix" in domain_intents(Path("domain"))

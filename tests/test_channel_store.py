"""Channel reports, merchant pictures, the bot's rating and the one-copy rule for Rasa
messages in the store, on SQLite and on a real PostgreSQL. A second ``DeskStore`` on the
same database stands for a second desk process."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command

from support_desk.attachments import add_attachment, read_attachment
from support_desk.channel_reports import parse_reports, prune_reports, take_reports
from support_desk.schema import channel_reports
from support_desk.db import alembic_config, create_engine, migrate, sync_url
from support_desk.store import Conflict, DeskStore, NotFound
from tests.harness.desk_app import new_case

SENDER = "wkKF01:wmMERCHANT"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def report(kind: str, report_id: str, at: float = 1_764_000_000.0, **fields) -> dict:
    return {"kind": kind, "report_id": report_id, "sender_id": SENDER, "channel": "wecom_kf", "at": at, **fields}


async def take(store: DeskStore, *reports: dict):
    parsed, rejected = parse_reports({"reports": list(reports)})
    assert rejected == []
    return await take_reports(store, parsed)


async def kf_case(store: DeskStore, **changes) -> dict:
    case, _ = await store.create_escalation(new_case(sender_id=SENDER, channel="wecom_kf", transcript=[], **changes), None)
    return case


def line(case: dict, message_id: int) -> dict:
    return next(m for m in case["transcript"] if m["id"] == message_id)


@pytest.fixture
async def second(database_url, store):  # noqa: F811 - the store fixture migrated it
    engine = create_engine(database_url)
    yield DeskStore(engine)
    await engine.dispose()


async def test_a_reply_on_a_reporting_channel_is_sending_until_the_channel_says(store, second):
    case = await kf_case(store)
    reply = await store.add_agent_reply(case["id"], "请重启终端", "li")
    await store.mark_delivery(reply["id"], None)  # Rasa took it: not yet the merchant's
    assert line(await store.get_escalation(case["id"]), reply["id"])["delivery"] == "sending"

    held = report(
        "delivery", "wecom_kf:m1:held", desk_message_id=reply["id"], text="请重启终端", state="held", reason="48-hour window closed"
    )
    assert (await take(store, held)).taken == 1
    shown = line(await store.get_escalation(case["id"]), reply["id"])
    assert (shown["delivery"], shown["delivery_reason"]) == ("held", "48-hour window closed")

    # The channel sends the batch again, to another desk process: nothing changes twice.
    again = await take(second, held)
    assert (again.taken, again.ignored) == (0, 1)

    sent = report("delivery", "wecom_kf:m1:sent", at=1_764_000_100.0, desk_message_id=reply["id"], text="请重启终端", state="sent")
    older = report(
        "delivery",
        "wecom_kf:m1:late",
        at=1_763_999_000.0,
        desk_message_id=reply["id"],
        text="请重启终端",
        state="held",
        reason="errcode 45015",
    )
    result = await take(store, sent, older)
    assert (result.taken, result.ignored) == (1, 1)
    shown = line(await store.get_escalation(case["id"]), reply["id"])
    assert (shown["delivery"], shown["delivery_reason"]) == ("delivered", None)

    # A later msg_send_fail (newer than the sent report) takes "delivered" back.
    failed = report(
        "delivery",
        "wecom_kf:m1:fail",
        at=1_764_000_200.0,
        desk_message_id=reply["id"],
        text="请重启终端",
        state="held",
        reason="msg_send_fail event",
    )
    assert (await take(store, failed)).taken == 1
    assert line(await store.get_escalation(case["id"]), reply["id"])["delivery"] == "held"


async def test_delivery_reports_that_name_nothing_of_this_merchant_change_nothing(store):
    case = await kf_case(store)
    reply = await store.add_agent_reply(case["id"], "您好", "li")
    other, _ = await store.create_escalation(new_case(sender_id="someone-else", ticket="PX-OTHER2"), None)
    theirs = await store.add_agent_reply(other["id"], "别人的", "li")
    result = await take(
        store,
        report("delivery", "r-bot", desk_message_id=None, text="机器人自己的话", state="sent"),
        report("delivery", "r-theirs", desk_message_id=theirs["id"], text="别人的", state="sent"),
        report("delivery", "r-none", desk_message_id=99999, text="?", state="sent"),
    )
    assert (result.taken, result.ignored) == (0, 3)
    assert line(await store.get_escalation(case["id"]), reply["id"])["delivery"] == "waiting"
    assert line(await store.get_escalation(other["id"]), theirs["id"])["channel_state"] is None


async def test_a_wecom_agents_message_joins_the_open_case(store):
    case = await kf_case(store)
    result = await take(
        store, report("agent_message", "wecom_kf:m9", text="卡号 4111111111111111 已查", servicer_userid="zhangsan", msgid="m9")
    )
    assert result.taken == 1
    [message] = (await store.get_escalation(case["id"]))["transcript"]
    assert (message["role"], message["kind"], message["author"]) == ("agent", "wecom_agent", "WeCom zhangsan")
    assert message["text"] == "卡号 411111******1111 已查" and message["delivered"] and message["delivery"] is None
    assert (await store.get_escalation(case["id"]))["first_reply_at"]
    # No open case (resolved): counted, not kept.
    await store.resolve(case["id"], "ok", None, "再见")
    result = await take(store, report("agent_message", "wecom_kf:m10", text="还在吗", servicer_userid="zhangsan", msgid="m10"))
    assert (result.taken, result.ignored) == (0, 1)


async def test_the_wecom_session_pool_agent_and_end(store):
    case = await kf_case(store)
    await take(store, report("session", "s2", state=2, servicer_userid=None))
    assert (await store.get_escalation(case["id"]))["platform_session"] == "pool"

    await take(store, report("session", "s3", state=3, servicer_userid="zhangsan"))
    claimed = await store.get_escalation(case["id"])
    assert (claimed["status"], claimed["claimed_by"], claimed["platform_session"]) == ("claimed", "wecom:zhangsan", "agent")
    with pytest.raises(Conflict, match="WeCom client"):
        await store.add_agent_reply(case["id"], "我来", "li")
    with pytest.raises(Conflict):
        await store.claim(case["id"], "li")

    result = await take(store, report("session", "s4", state=4, servicer_userid="zhangsan"))
    assert result.resumed == [case["id"]]
    ended = await store.get_escalation(case["id"])
    assert (ended["status"], ended["resolved_by"], ended["resolution_note"]) == ("resolved", "wecom:zhangsan", "ended in WeCom")
    # Only the resume is queued: no closing text, no rating question.
    assert [m["kind"] for m in await store.undelivered(case["id"])] == ["resume"]
    # Once ended, a repeat (new report_id) finds no open case.
    assert (await take(store, report("session", "s4b", state=4, servicer_userid="zhangsan"))).resumed == []


async def test_the_same_report_at_once_in_two_processes_is_taken_once(store, second):
    case = await kf_case(store)
    same = report("agent_message", "wecom_kf:race", text="同一条", servicer_userid="zhangsan", msgid="race")
    results = await asyncio.gather(take(store, same), take(second, same))
    assert sorted(r.taken for r in results) == [0, 1]
    assert [m["text"] for m in (await store.get_escalation(case["id"]))["transcript"]] == ["同一条"]


async def test_a_picture_is_kept_once_on_the_open_case(store, second):
    assert await add_attachment(store, SENDER, "wecom_kf", "img-1", "image/png", PNG) is None  # no case
    case = await kf_case(store)
    first, created = await add_attachment(store, SENDER, "wecom_kf", "img-1", "image/png", PNG)
    assert created
    assert await add_attachment(second, SENDER, "wecom_kf", "img-1", "image/png", PNG) == (first, False)
    [message] = (await store.get_escalation(case["id"]))["transcript"]
    assert (message["role"], message["text"], message["attachment_id"]) == ("user", "[image]", first)
    assert await read_attachment(store, first) == ("image/png", PNG)
    assert await read_attachment(store, first + 100) is None


async def test_a_rasa_message_filed_by_two_processes_at_once_is_kept_once(store, second):
    case, _ = await store.create_escalation(
        new_case(transcript=[{"role": "user", "text": "报1000", "source_ts": 1.0}, {"role": "user", "text": "again", "source_ts": 1.0}]),
        None,
    )
    assert [m["text"] for m in case["transcript"]] == ["报1000"]
    at = datetime.now(timezone.utc)
    lines = [{"text": "还要等多久", "source_ts": 5.0, "at": at}, {"text": "在吗", "source_ts": 6.0, "at": at}]
    added = await asyncio.gather(store.add_merchant_messages(case["id"], lines), second.add_merchant_messages(case["id"], lines))
    assert sum(added) == 2
    assert await store.add_merchant_messages(case["id"], lines) == 0
    texts = [m["text"] for m in (await store.get_escalation(case["id"]))["transcript"]]
    assert texts == ["报1000", "还要等多久", "在吗"]


async def test_the_bots_rating_once_on_the_latest_fixed_outcome(store):
    with pytest.raises(NotFound):
        await store.rate_bot("shop-9", 5)
    await store.record_outcome("shop-9", "unresolved", None, "zh")
    with pytest.raises(Conflict, match="not fixed"):
        await store.rate_bot("shop-9", 5)
    await store.record_outcome("shop-9", "resolved", "restart", "zh")
    assert await store.rate_bot("shop-9", 4) == {"sender_id": "shop-9", "rating": 4}
    with pytest.raises(Conflict, match="already rated"):
        await store.rate_bot("shop-9", 2)
    await store.record_outcome("shop-8", "resolved", "network", "zh")
    await store.rate_bot("shop-8", 5)
    stats = await store.stats()
    assert (stats["bot_rating_average"], stats["bot_ratings"]) == (4.5, 2)
    assert (stats["agent_rating_average"], stats["agent_ratings"]) == (None, 0)


async def test_migration_0004_keeps_the_first_of_duplicated_copies(database_url):  # noqa: F811
    command.upgrade(alembic_config(database_url), "0003")
    engine = sa.create_engine(sync_url(database_url))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO escalations (id, ticket, sender_id, channel, language, status, priority, diagnostics,"
                " created_at, updated_at) VALUES (1, 'PX-DUP000', 's', 'rest', 'zh', 'open', 'normal', '[]',"
                " '2026-12-01 00:00:00', '2026-12-01 00:00:00')"
            )
        )
        for text in ("first", "copy", "copy 2"):
            conn.execute(
                sa.text(
                    "INSERT INTO messages (escalation_id, role, text, at, kind, source_ts) VALUES"
                    " (1, 'user', :text, '2026-12-01 00:00:01', 'merchant', 7.0)"
                ),
                {"text": text},
            )
    migrate(database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT text FROM messages")).scalars().all() == ["first"]
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(
                sa.text(
                    "INSERT INTO messages (escalation_id, role, text, at, kind, source_ts) VALUES"
                    " (1, 'user', 'again', '2026-12-01 00:00:02', 'merchant', 7.0)"
                )
            )
    engine.dispose()


async def report_ids(store: DeskStore) -> list:
    async with store.engine.connect() as conn:
        return sorted((await conn.execute(sa.select(channel_reports.c.report_id))).scalars().all())


async def test_report_ids_are_kept_for_the_retention_only_and_the_bots_leave_none(store):
    case = await kf_case(store)
    reply = await store.add_agent_reply(case["id"], "请重启终端", "li")
    await take(
        store,
        report("delivery", "r-held", desk_message_id=reply["id"], text="请重启终端", state="held", reason="48-hour window closed"),
        report("delivery", "r-bot", desk_message_id=None, text="机器人自己的话", state="sent"),
        report("session", "r-pool", state=2, servicer_userid=None),
    )
    assert await report_ids(store) == ["r-held", "r-pool"]
    retention = timedelta(days=14)
    now = datetime.now(timezone.utc)
    assert await prune_reports(store, retention, now=now + timedelta(days=13)) == 0
    assert await prune_reports(store, retention, now=now + timedelta(days=15)) == 2
    assert await report_ids(store) == []
    shown = await store.get_escalation(case["id"])
    assert line(shown, reply["id"])["delivery"] == "held" and shown["platform_session"] == "pool"

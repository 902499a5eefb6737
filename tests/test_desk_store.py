"""The desk store and its migrations on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from support_desk.accounts import create_agent, ensure_first_agent, verify_password
from alembic.script import ScriptDirectory

from support_desk.db import alembic_config, create_engine, migrate, sync_url
from support_desk.incident_input import IncidentText, parse_scope
from support_desk.incidents import IncidentBoard
from support_desk.store import Conflict, DeskStore, NotFound
from tests.harness.desk_app import new_case


async def test_escalation_life_cycle(store):
    # Given in business time (UTC+8), kept as the same instant.
    reply_by = datetime(2026, 11, 25, 10, 30, tzinfo=timezone(timedelta(hours=8)))
    case, created = await store.create_escalation(new_case(), reply_by)
    assert created and case["status"] == "open"
    assert case["expected_reply_by"] == "2026-11-25T02:30:00+00:00"
    assert case["summary"] == "卡号 411111******1111"
    again, created_again = await store.create_escalation(new_case(summary="other"), reply_by)
    assert not created_again and again["id"] == case["id"] and again["summary"] == case["summary"]

    claimed = await store.claim(case["id"], "li")
    assert (claimed["status"], claimed["claimed_by"]) == ("claimed", "li")
    with pytest.raises(Conflict):
        await store.claim(case["id"], "wang")

    reply = await store.add_agent_reply(case["id"], "您好", "li")
    assert reply["kind"] == "reply" and reply["delivered"] is False
    pending = await store.undelivered(case["id"])
    assert [(m["text"], m["sender_id"]) for m in pending] == [("您好", "shop-17")]
    await store.mark_delivery(reply["id"], "Rasa answered 503")
    assert (await store.get_escalation(case["id"]))["transcript"][-1]["delivery_error"] == "Rasa answered 503"
    await store.mark_delivery(reply["id"], None)
    assert await store.undelivered(case["id"]) == []

    resolved = await store.resolve(case["id"], "fixed", "network", "再见")
    assert resolved["status"] == "resolved" and resolved["resolved_at"]
    assert [m["kind"] for m in await store.undelivered()] == ["closing"]
    with pytest.raises(Conflict):
        await store.resolve(case["id"], "again", None, "x")
    with pytest.raises(NotFound):
        await store.get_escalation(999)


async def test_lookups_by_ticket_and_conversation(store):
    first, _ = await store.create_escalation(new_case(), None)
    second, _ = await store.create_escalation(new_case(ticket="PX-DEF567"), None)
    assert (await store.find_by_ticket("PX-DEF567"))["id"] == second["id"]
    assert (await store.latest_for_sender("shop-17"))["id"] == second["id"]
    assert [e["id"] for e in await store.list_escalations(ticket="PX-ABC234")] == [first["id"]]
    with pytest.raises(NotFound):
        await store.find_by_ticket("PX-NOPE00")
    with pytest.raises(NotFound):
        await store.latest_for_sender("someone-else")


async def test_merchant_messages_are_copied_once(store):
    case, _ = await store.create_escalation(new_case(), None)
    at = datetime.now(timezone.utc)
    lines = [{"text": "还在吗", "source_ts": 5.0, "at": at}, {"text": "报1000", "source_ts": 1.0, "at": at}]
    assert await store.add_merchant_messages(case["id"], lines) == 1
    assert await store.add_merchant_messages(case["id"], lines) == 0
    texts = [m["text"] for m in (await store.get_escalation(case["id"]))["transcript"]]
    assert texts == ["报1000", "还在吗"]


async def test_incidents_active_window(store):
    board = IncidentBoard(store)
    now = datetime.now(timezone.utc)
    scope = parse_scope(None)

    async def post(starts_at, expected_end):
        return await board.post(IncidentText(scope, "维护", "maintenance", starts_at, expected_end), "api", 10)

    active = await post(now - timedelta(hours=1), None)
    await post(now - timedelta(hours=3), now - timedelta(hours=1))
    await post(now + timedelta(hours=1), None)
    assert [i["id"] for i in await board.list()] == [active["id"]]
    assert len(await board.list(active_only=False)) == 3
    await board.close(active["id"], "", "api", {"zh": "好了", "en": "back"})
    assert await board.list() == []


async def test_agents(store):
    password = await ensure_first_agent(store)
    assert password and await ensure_first_agent(store) is None
    assert verify_password(await store.agent_password_hash("admin"), password)
    assert not verify_password(await store.agent_password_hash("admin"), password + "x")
    assert not verify_password(await store.agent_password_hash("nobody"), password)
    second = await create_agent(store, "li")
    assert verify_password(await store.agent_password_hash("li"), second)
    assert (await store.agent_role("admin"), await store.agent_role("li")) == ("operator", "agent")
    await create_agent(store, "zhao", role="operator")
    assert await store.agent_role("zhao") == "operator" and await store.agent_role("nobody") is None
    with pytest.raises(Conflict):
        await create_agent(store, "li")


async def test_migrating_again_keeps_the_data(database_url):
    migrate(database_url)
    engine = create_engine(database_url)
    try:
        case, _ = await DeskStore(engine).create_escalation(new_case(), None)
    finally:
        await engine.dispose()
    migrate(database_url)
    engine = create_engine(database_url)
    try:
        assert (await DeskStore(engine).get_escalation(case["id"]))["ticket"] == "PX-ABC234"
    finally:
        await engine.dispose()
    revision = sa.create_engine(sync_url(database_url)).connect().execute(sa.text("select version_num from alembic_version")).scalar()
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert revision == head == "0010"

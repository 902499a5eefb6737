"""The store's read-only queries for the queue and the case history, on SQLite and on a
real PostgreSQL (LIKE is case-sensitive there, so both must agree)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from support_desk.schema import escalations
from support_desk.store import DeskStore, NewEscalation

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc)


async def add(store: DeskStore, ticket: str, days_ago: float, **fields) -> dict:
    """A case created ``days_ago`` days before NOW (the stored time is set directly)."""
    base = dict(sender_id=f"chat-{ticket}", channel="rest", language="zh", ticket=ticket)
    case, _ = await store.create_escalation(NewEscalation(**{**base, **fields}), None)
    async with store.engine.begin() as conn:
        await conn.execute(escalations.update().where(escalations.c.id == case["id"]).values(created_at=NOW - timedelta(days=days_ago)))
    return await store.get_escalation(case["id"])


async def tickets(store: DeskStore, **query) -> list:
    return [case["ticket"] for case in await store.list_escalations(**query)]


async def test_search_by_ticket_merchant_serial_and_phone(store):
    await add(store, "PX-AAAAAA", 1, merchant_id="898310048160123", terminal_serial="SN-7Q2K", contact="138 1234 5678")
    await add(store, "PX-BBBBBB", 2, merchant_id="898310048169999", terminal_serial="N86-0042", contact="+86-139-0000-1111")
    assert await tickets(store, search="px-aaaaaa") == ["PX-AAAAAA"]  # any case
    assert await tickets(store, search="AAAA") == ["PX-AAAAAA"]
    assert await tickets(store, search="898310048169999") == ["PX-BBBBBB"]
    assert await tickets(store, search="sn-7q2k") == ["PX-AAAAAA"]
    assert await tickets(store, search="13812345678") == ["PX-AAAAAA"]  # typed without spaces
    assert await tickets(store, search="139 0000 1111") == ["PX-BBBBBB"]  # separators typed
    assert await tickets(store, search="8983100481") == ["PX-AAAAAA", "PX-BBBBBB"]
    assert await tickets(store, search="nothing-like-it") == []


async def test_search_treats_like_wildcards_as_text(store):
    await add(store, "PX-AAAAAA", 1, merchant_id="898310048160123")
    assert await tickets(store, search="%") == []
    assert await tickets(store, search="_") == []


async def test_short_digit_runs_do_not_match_phones(store):
    await add(store, "PX-AAAAAA", 1, contact="13812345678")
    assert await tickets(store, search="138") == []  # three digits: too vague for a phone
    assert await tickets(store, search="5678") == ["PX-AAAAAA"]


async def test_priority_and_age_filters_in_the_query(store):
    await add(store, "PX-AAAAAA", 0.01, priority="urgent")
    await add(store, "PX-BBBBBB", 3)
    assert await tickets(store, priority="urgent") == ["PX-AAAAAA"]
    assert await tickets(store, created_before=NOW - timedelta(days=1)) == ["PX-BBBBBB"]
    assert await tickets(store, created_before=NOW - timedelta(days=5)) == []


async def test_earlier_cases_of_the_merchant_or_the_serial(store):
    await add(store, "PX-OLDSN1", 10, terminal_serial="SN-1", merchant_id="M-OTHER")
    await add(store, "PX-OLDMER", 5, merchant_id="M-1")
    await add(store, "PX-ELSEWH", 4, merchant_id="M-2", terminal_serial="SN-2")
    current = await add(store, "PX-NOWNOW", 1, merchant_id="M-1", terminal_serial="SN-1")
    await add(store, "PX-LATER1", 0.5, merchant_id="M-1")  # after the current case: not earlier
    earlier = await store.earlier_cases(current)
    assert [case["ticket"] for case in earlier] == ["PX-OLDMER", "PX-OLDSN1"]
    assert await store.earlier_cases({**current, "merchant_id": None, "terminal_serial": None}) == []


async def test_diagnostics_runs_of_one_conversation(store):
    await store.record_outcome("chat-1", "resolved", "network", "zh")
    await store.record_outcome("chat-1", "unresolved", None, "zh")
    await store.record_outcome("chat-2", "resolved", "restart", "zh")
    runs = await store.diagnostics_runs("chat-1")
    assert [(run["outcome"], run["fixed_step"]) for run in runs] == [("unresolved", None), ("resolved", "network")]
    assert all(datetime.fromisoformat(run["at"]).tzinfo for run in runs)


async def test_serial_case_counts_within_the_window(store):
    first = await add(store, "PX-AAAAA1", 9, terminal_serial="SN-1")  # outside 7 days of the last
    second = await add(store, "PX-AAAAA2", 6, terminal_serial="SN-1")
    third = await add(store, "PX-AAAAA3", 3, terminal_serial="SN-1")
    fourth = await add(store, "PX-AAAAA4", 1, terminal_serial="SN-1")
    other = await add(store, "PX-BBBBB1", 1, terminal_serial="SN-2")
    none = await add(store, "PX-CCCCC1", 1)
    counts = await store.serial_case_counts([first, second, third, fourth, other, none], timedelta(days=7))
    assert counts == {first["id"]: 1, second["id"]: 2, third["id"]: 3, fourth["id"]: 3, other["id"]: 1}
    assert await store.serial_case_counts([none], timedelta(days=7)) == {}

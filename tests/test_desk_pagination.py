"""Keyset pages of the case list and the stats as SQL aggregates, on SQLite and on a real
PostgreSQL server: nothing skipped or repeated when cases arrive between pages, ties on
the creation time, bad cursors refused, and the indexes the queries read through."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command

from support_desk.db import alembic_config, create_engine, migrate, sync_url
from support_desk.pagination import Cursor, PageKey, decode_cursor, encode_cursor, parse_limit
from support_desk.schema import escalations, outcomes
from support_desk.store import DeskStore, NewEscalation, _search_condition
from support_desk.validation import Invalid

_names = itertools.count(start=1000)  # database names apart from test_desk_store's


async def add(store: DeskStore, number: int, **changes) -> dict:
    case, _ = await store.create_escalation(
        NewEscalation(sender_id=f"shop-{number}", channel="rest", language="zh", ticket=f"PX-P{number:05d}", **changes), None
    )
    return case


async def walk(store: DeskStore, limit: int, between=None, **filters) -> list:
    """Every page from the first, following next_cursor; ``between(n)`` runs after page n."""
    seen, cursor, number = [], None, 0
    while True:
        page = await store.escalation_page(limit=limit, cursor=cursor, **filters)
        assert len(page.items) <= limit
        seen.extend(case["ticket"] for case in page.items)
        number += 1
        if between:
            await between(number)
        if page.next_cursor is None:
            return seen
        cursor = decode_cursor(page.next_cursor)


async def test_pages_follow_the_list_order_and_cases_added_between_pages_skip_nothing(store):
    for number in range(7):
        await add(store, number, priority="high" if number % 2 else "normal")
    everything = [case["ticket"] for case in (await store.escalation_page(limit=200)).items]
    assert everything == [f"PX-P{n:05d}" for n in range(6, -1, -1)]  # newest first

    added = []

    async def new_case_arrives(page_number: int) -> None:
        added.append((await add(store, 100 + page_number))["ticket"])

    seen = await walk(store, 3, between=new_case_arrives)
    # The list as it was when paging started, once each, in order; new cases come before page 1.
    assert seen == everything and len(added) == 3
    assert [c["ticket"] for c in (await store.escalation_page(limit=3)).items] == added[::-1]
    assert await walk(store, 2, priority="high") == ["PX-P00005", "PX-P00003", "PX-P00001"]


async def test_equal_creation_times_are_ordered_by_id_across_pages(store, database_url):
    cases = [await add(store, number) for number in range(5)]
    same = datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=timezone.utc)
    engine = sa.create_engine(sync_url(database_url))
    with engine.begin() as conn:
        conn.execute(escalations.update().values(created_at=same))
    engine.dispose()
    assert await walk(store, 2) == [case["ticket"] for case in reversed(cases)]


async def test_previous_page_is_the_page_before(store):
    for number in range(5):
        await add(store, number)
    first = await store.escalation_page(limit=2)
    assert first.prev_cursor is None and first.next_cursor
    second = await store.escalation_page(limit=2, cursor=decode_cursor(first.next_cursor))
    assert [c["ticket"] for c in second.items] == ["PX-P00002", "PX-P00001"]
    assert second.prev_cursor
    back = await store.escalation_page(limit=2, cursor=decode_cursor(second.prev_cursor))
    assert [c["ticket"] for c in back.items] == [c["ticket"] for c in first.items]
    assert back.prev_cursor is None  # nothing newer than the first page
    last = await store.escalation_page(limit=2, cursor=decode_cursor(second.next_cursor))
    assert [c["ticket"] for c in last.items] == ["PX-P00000"] and last.next_cursor is None


def test_cursors_are_opaque_and_only_our_own_are_taken():
    case = {"created_at": "2026-12-01T08:00:00.000123+00:00", "id": 42}
    cursor = decode_cursor(encode_cursor(case, backward=True))
    assert cursor == Cursor(PageKey(datetime(2026, 12, 1, 8, 0, 0, 123, tzinfo=timezone.utc), 42), backward=True)
    naive = encode_cursor({"created_at": "2026-12-01T08:00:00", "id": 1}, backward=False)
    for bad in (
        "",
        "abc",
        "!!!!",
        "eyJ4IjoxfQ",
        naive,
        "A" * 500,
        encode_cursor({"created_at": "2026-12-01T08:00:00+00:00", "id": True}, backward=False),
        encode_cursor({"created_at": "2026-12-01T08:00:00+00:00", "id": -1}, backward=False),
    ):
        with pytest.raises(Invalid):
            decode_cursor(bad)
    assert (parse_limit(None), parse_limit("1"), parse_limit("200")) == (50, 1, 200)
    for bad in ("0", "201", "-1", "1.5", "ten", "５"):
        with pytest.raises(Invalid):
            parse_limit(bad)


async def test_stats_are_counted_by_the_database(store, database_url):
    now = datetime.now(timezone.utc)
    waits = {0: 10, 1: 30, 2: None, 3: 20, 4: 50}  # answered after … minutes
    cases = [await add(store, number) for number in waits]
    old = await add(store, 99)  # outside the period
    engine = sa.create_engine(sync_url(database_url))
    with engine.begin() as conn:
        for case, minutes in zip(cases, waits.values()):
            created = now - timedelta(days=case["id"] % 3, hours=1)
            conn.execute(
                escalations.update()
                .where(escalations.c.id == case["id"])
                .values(
                    created_at=created,
                    first_reply_at=created + timedelta(minutes=minutes) if minutes is not None else None,
                    satisfaction=case["id"] % 5 + 1,
                    satisfaction_at=now,
                )
            )
        conn.execute(
            escalations.update().where(escalations.c.id == old["id"]).values(created_at=now - timedelta(days=40), first_reply_at=now)
        )
        for outcome, step, at in [
            ("resolved", "network", now),
            ("resolved", "network", now),
            ("resolved", "restart", now),
            ("unresolved", None, now),
            ("resolved", "server", now - timedelta(days=30)),
        ]:
            conn.execute(
                outcomes.insert().values(
                    sender_id="s",
                    outcome=outcome,
                    fixed_step=step,
                    language="zh",
                    at=at,
                    rating=4 if step else None,
                    rated_at=at if step else None,
                )
            )
    stats = await store.stats()
    assert stats["escalated"] == 5 and sum(stats["escalations_per_day"].values()) == 5
    by_day = {(now - timedelta(days=case["id"] % 3, hours=1)).date().isoformat() for case in cases}
    assert {day for day, n in stats["escalations_per_day"].items() if n} == by_day
    assert stats["median_first_reply_minutes"] == 25.0  # (20 + 30) / 2: four answered
    assert (stats["solved_by_bot"], stats["fixed_by_step"]) == (3, {"network": 2, "restart": 1, "server": 0, "software": 0})
    ratings = [case["id"] % 5 + 1 for case in cases]
    assert stats["agent_rating_average"] == round(sum(ratings) / 5, 2) and stats["agent_ratings"] == 5
    assert (stats["bot_rating_average"], stats["bot_ratings"]) == (4.0, 3)
    with engine.begin() as conn:  # five answered: the middle one
        conn.execute(
            escalations.update()
            .where(escalations.c.id == cases[2]["id"])
            .values(first_reply_at=now - timedelta(days=cases[2]["id"] % 3, hours=1) + timedelta(minutes=40))
        )
    engine.dispose()
    assert (await store.stats())["median_first_reply_minutes"] == 30.0


def test_list_queries_read_through_the_indexes_on_postgresql(postgres):
    # The search box's substrings through the trigram indexes, the pages through the composite ones.
    url = postgres.create_database(f"explain_{next(_names)}")
    migrate(url)
    engine = sa.create_engine(sync_url(url))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO escalations (ticket, sender_id, channel, language, status, priority, diagnostics,"
                " terminal_serial, satisfaction, satisfaction_at, created_at, updated_at)"
                " SELECT 'PX-' || n, 's-' || n, 'rest', 'zh',"
                " (ARRAY['open','claimed','resolved','resolved','resolved'])[n % 5 + 1],"
                " (ARRAY['urgent','high','normal','normal'])[n % 4 + 1], '[]', 'SN' || (n % 997), n % 5 + 1,"
                " now() - n * interval '1 minute', now() - n * interval '1 minute', now()"
                " FROM generate_series(1, 20000) AS n"
            )
        )
        key = conn.execute(sa.text("SELECT created_at, id FROM escalations ORDER BY created_at DESC, id DESC OFFSET 5000 LIMIT 1")).one()
    with engine.connect() as conn:
        # As autovacuum would: statistics, and the trigram indexes' pending entries merged.
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE escalations")
    statements = {
        "first page": sa.select(escalations).order_by(escalations.c.created_at.desc(), escalations.c.id.desc()).limit(51),
        "open, after a cursor": sa.select(escalations)
        .where(escalations.c.status == "open", sa.tuple_(escalations.c.created_at, escalations.c.id) < sa.tuple_(key.created_at, key.id))
        .order_by(escalations.c.created_at.desc(), escalations.c.id.desc())
        .limit(51),
        "ratings of a period": sa.select(sa.func.avg(escalations.c.satisfaction)).where(
            escalations.c.satisfaction_at >= datetime.now(timezone.utc) - timedelta(hours=2)
        ),
        "a terminal's cases": sa.select(escalations.c.id).where(
            escalations.c.terminal_serial.in_(["SN5", "SN6"]), escalations.c.created_at >= key.created_at
        ),
        "search box": sa.select(escalations)
        .where(_search_condition("px-12345"))
        .order_by(escalations.c.created_at.desc(), escalations.c.id.desc())
        .limit(51),
    }
    expected = {
        "search box": "ix_escalations_ticket_trgm",
        "first page": "ix_escalations_created_at_id",
        "open, after a cursor": "ix_escalations_status_created_at_id",
        "ratings of a period": "ix_escalations_satisfaction_at",
        "a terminal's cases": "ix_escalations_terminal_serial_created_at",
    }
    with engine.connect() as conn:
        for name, statement in statements.items():
            compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).scalars())
            assert expected[name] in plan and "Seq Scan" not in plan, (name, plan)
    engine.dispose()


def test_migration_0005_goes_down_and_up_again(database_url):
    migrate(database_url)
    config = alembic_config(database_url)
    command.downgrade(config, "0004")
    engine = sa.create_engine(sync_url(database_url))
    names = {index["name"] for index in sa.inspect(engine).get_indexes("escalations")}
    assert "ix_escalations_status" in names and "ix_escalations_status_created_at_id" not in names
    engine.dispose()
    migrate(database_url)
    engine = sa.create_engine(sync_url(database_url))
    names = {index["name"] for index in sa.inspect(engine).get_indexes("escalations")}
    assert {"ix_escalations_created_at_id", "ix_escalations_status_created_at_id"} <= names
    assert "ix_escalations_status" not in names
    engine.dispose()


async def test_the_bench_seed_loads_and_every_seeded_case_is_paged_once(postgres):
    # bench/desk_scale.py's COPY rows fit the migrated schema; walking the pages of each
    # status visits every case once, and the stats count them all.
    from bench.desk_scale import seed, targets

    url = postgres.create_database(f"seeded_{next(_names)}")
    counts = seed(url, 1200, 30, "pw", {"incidents": 6, "merchants_per_incident": 10, "reports": 300})
    assert (counts["escalations"], counts["messages"] >= 2400, counts["outcomes"] >= 1200) == (1200, True, True)
    assert (counts["incidents"], counts["incident_merchants"], counts["incident_reports"]) == (6, 60, 300)
    engine = create_engine(url)
    try:
        store = DeskStore(engine)
        seen = []
        for status in ("open", "claimed", "resolved"):
            seen += await walk(store, 200, status=status)
        assert sorted(seen) == [f"PX-{n:07d}" for n in range(1, 1201)]
        stats = await store.stats(days=30)
        assert stats["escalated"] == 1200 and stats["median_first_reply_minutes"] is not None
        # The board reads the seeded incidents: two active ones, their merchants held.
        from support_desk.incidents import IncidentBoard

        board = IncidentBoard(store)
        assert [i["status"] for i in await board.list(active_only=True)] == ["active", "active"]
        held = await board.get(6)
        assert len(held["linked"]) == 10
        again, _ = await store.create_escalation(  # the sequences continue after the seeded ids
            NewEscalation(sender_id="after-seed", channel="rest", language="zh"), None
        )
        assert again["id"] == 1201
    finally:
        await engine.dispose()
    figures = {
        "kinds": [{"kind": "queue", "p95_ms": 120.0}, {"kind": "case", "p95_ms": 301.0}],
        "rss_mib": {"after_warmup": 80.0, "after_requests": 85.0},
        "error_count": 0,
    }
    met = {check["target"]: check["met"] for check in targets(figures, {"target_p95_ms": 300, "rss_growth_mib": 20})}
    assert met == {"queue p95 ≤ 300 ms": True, "case p95 ≤ 300 ms": False, "desk RSS growth ≤ 20 MiB": True, "no errors": True}

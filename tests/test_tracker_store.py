"""The tuned tracker store keeps conversations exactly like Rasa's own SQL store, on SQLite
(WAL) and on PostgreSQL, with several processes writing to one conversation in turn."""

from __future__ import annotations

import itertools
import sqlite3
from typing import List

import pytest
from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, ActiveLoop, BotUttered, Event, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from rasa_server.tracker_store import TunedSQLTrackerStore

DOMAIN = Domain.from_dict(
    {
        "intents": ["greet", "inform_not_fixed", "inform_fixed"],
        "slots": {"network_ok": {"type": "bool", "mappings": []}, "terminal_model": {"type": "text", "mappings": []}},
        "responses": {"utter_greet": [{"text": "你好"}]},
        "forms": {"diagnostics_form": {"required_slots": ["network_ok"]}},
    }
)
_names = itertools.count()
_clock = itertools.count(1_700_000_000)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracker.db'}"
    return request.getfixturevalue("postgres").create_database(f"tracker_{next(_names)}")


def turn(text: str, intent: str, *after: Event) -> List[Event]:
    """One merchant turn as the processor logs it, with increasing timestamps."""
    events = [UserUttered(text, {"name": intent, "confidence": 0.9}), *after, BotUttered("好的"), ActionExecuted("action_listen")]
    for event in events:
        event.timestamp = float(next(_clock))
    return events


def session_start() -> List[Event]:
    events = [ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen")]
    for event in events:
        event.timestamp = float(next(_clock))
    return events


async def handle(store: SQLTrackerStore, sender: str, events: List[Event]) -> DialogueStateTracker:
    """What the processor does with a message: retrieve (or create), update, save."""
    tracker = await store.retrieve(sender)
    if tracker is None:
        tracker = DialogueStateTracker(sender, DOMAIN.slots)
    for event in events:
        tracker.update(event)
    await store.save(tracker)
    return tracker


async def assert_same_as_rasa(url: str, sender: str, *stores: SQLTrackerStore) -> None:
    """Every store returns what a fresh Rasa SQLTrackerStore reads from the database."""
    expected = await SQLTrackerStore(DOMAIN, host=url).retrieve(sender)
    for store in stores:
        got = await store.retrieve(sender)
        assert list(got.events) == list(expected.events)
        assert got.current_state() == expected.current_state()


async def test_two_workers_and_plain_rasa_writing_in_turn_keep_rasa_semantics(database_url):
    worker_a = TunedSQLTrackerStore(DOMAIN, host=database_url)
    worker_b = TunedSQLTrackerStore(DOMAIN, host=database_url)
    plain = SQLTrackerStore(DOMAIN, host=database_url)
    sender = "merchant-898310048160123"
    script = [
        (
            worker_a,
            session_start() + turn("pos机报1000", "inform_not_fixed", ActionExecuted("diagnostics_form"), ActiveLoop("diagnostics_form")),
        ),
        (worker_a, turn("还是不行", "inform_not_fixed", SlotSet("network_ok", False))),
        (worker_b, turn("A920", "inform_not_fixed", SlotSet("terminal_model", "A920"))),
        (plain, turn("还是不行", "inform_not_fixed")),
        (worker_a, turn("可以了", "inform_fixed", ActiveLoop(None))),
        # A new session: only its events are returned from now on, as by Rasa's store.
        (worker_b, session_start() + turn("你好", "greet")),
        (worker_a, turn("还是1000", "inform_not_fixed")),
    ]
    for store, events in script:
        await handle(store, sender, events)
        await assert_same_as_rasa(database_url, sender, worker_a, worker_b, plain)

    latest = await worker_a.retrieve(sender)
    assert [e.text for e in latest.events if isinstance(e, UserUttered)] == ["你好", "还是1000"]
    assert latest.get_slot("network_ok") is None


async def test_rows_are_the_rows_rasa_writes(database_url, tmp_path):
    tuned = TunedSQLTrackerStore(DOMAIN, host=database_url)
    plain = SQLTrackerStore(DOMAIN, host=f"sqlite:///{tmp_path / 'plain.db'}")
    script = [session_start() + turn("hi", "greet"), turn("still broken", "inform_not_fixed", SlotSet("network_ok", False))]
    for events in script:
        for store in (tuned, plain):
            await handle(store, "m1", [Event.from_parameters(e.as_dict()) for e in events])

    def rows(store: SQLTrackerStore) -> list:
        table = store.SQLEvent.__table__
        with store.engine.connect() as connection:
            return [
                tuple(row)
                for row in connection.execute(
                    table.select()
                    .with_only_columns(
                        table.c.sender_id, table.c.type_name, table.c.timestamp, table.c.intent_name, table.c.action_name, table.c.data
                    )
                    .order_by(table.c.id)
                )
            ]

    assert rows(tuned) == rows(plain)
    assert len(rows(tuned)) == 10


async def test_a_saved_tracker_is_served_from_memory_until_someone_else_writes(tmp_path):
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    store = TunedSQLTrackerStore(DOMAIN, host=url)
    await handle(store, "m1", session_start() + turn("hi", "greet"))
    # The in-memory tracker of a new session also holds `action_session_start`, which a
    # read leaves out: it is read once more, then kept.
    saved = await handle(store, "m1", turn("还是不行", "inform_not_fixed"))
    assert await store.retrieve("m1") is saved  # no re-read, no replay

    other = TunedSQLTrackerStore(DOMAIN, host=url)
    await handle(other, "m1", turn("A920", "inform_not_fixed", SlotSet("terminal_model", "A920")))
    caught_up = await store.retrieve("m1")
    assert caught_up is saved  # only the other process's events were replayed onto it
    assert caught_up.get_slot("terminal_model") == "A920"
    assert [e.text for e in caught_up.events if isinstance(e, UserUttered)] == ["hi", "还是不行", "A920"]


async def test_a_tracker_changed_but_not_saved_is_read_again(tmp_path):
    store = TunedSQLTrackerStore(DOMAIN, host=f"sqlite:///{tmp_path / 'tracker.db'}")
    await handle(store, "m1", session_start() + turn("hi", "greet"))
    tracker = await handle(store, "m1", turn("A920", "inform_not_fixed"))
    assert await store.retrieve("m1") is tracker
    # The processor failed half-way: the change never reached the database.
    tracker.update(SlotSet("network_ok", True))
    again = await store.retrieve("m1")
    assert again is not tracker
    assert again.get_slot("network_ok") is None
    assert len(again.events) == len(tracker.events) - 1


async def test_the_cache_is_bounded_and_evicted_conversations_still_read(tmp_path):
    store = TunedSQLTrackerStore(DOMAIN, host=f"sqlite:///{tmp_path / 'tracker.db'}", cache_size=2)
    for sender in ("m1", "m2", "m3"):
        await handle(store, sender, session_start() + turn(f"hi {sender}", "greet"))
        await handle(store, sender, turn("还是不行", "inform_not_fixed"))
    assert list(store._known) == ["m2", "m3"]
    first = await store.retrieve("m1")
    assert [e.text for e in first.events if isinstance(e, UserUttered)] == ["hi m1", "还是不行"]

    off = TunedSQLTrackerStore(DOMAIN, host=f"sqlite:///{tmp_path / 'tracker.db'}", cache_size=0)
    saved = await handle(off, "m1", turn("again", "greet"))
    assert not off._known and await off.retrieve("m1") is not saved


class CollectingBroker(EventBroker):
    """An event broker that keeps what it is given (stands in for Kafka / RabbitMQ)."""

    def __init__(self) -> None:
        self.published: list = []

    def publish(self, event: dict) -> None:
        self.published.append(event)


async def test_the_event_broker_gets_each_new_event_once(tmp_path):
    broker = CollectingBroker()
    store = TunedSQLTrackerStore(DOMAIN, host=f"sqlite:///{tmp_path / 'tracker.db'}", event_broker=broker)
    await handle(store, "m1", session_start() + turn("hi", "greet"))
    await handle(store, "m1", turn("还是不行", "inform_not_fixed"))
    assert [e["event"] for e in broker.published] == [
        "action",
        "session_started",
        "action",
        "user",
        "bot",
        "action",
        "user",
        "bot",
        "action",
    ]
    assert {e["sender_id"] for e in broker.published} == {"m1"}


def test_sqlite_keeps_its_connections_and_uses_the_write_ahead_log(tmp_path):
    path = tmp_path / "tracker.db"
    store = TunedSQLTrackerStore(domain=DOMAIN, host=f"sqlite:///{path}")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        first = connection.connection.dbapi_connection
    with store.engine.connect() as connection:
        assert connection.connection.dbapi_connection is first  # kept, not reopened
    with sqlite3.connect(path) as plain:  # the journal mode is a property of the file
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_message_costs_three_statements_and_no_transaction_on_postgresql(postgres):
    import sqlalchemy as sa

    store = TunedSQLTrackerStore(DOMAIN, host=postgres.create_database(f"tracker_{next(_names)}"))
    await handle(store, "m-count", session_start() + turn("你好", "greet"))
    # (A session start is read back once before the tracker is kept.)
    await handle(store, "m-count", turn("报1000", "greet"))
    statements: List[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: statements.append(statement.split()[0]))
    await handle(store, "m-count", turn("还是不行", "inform_not_fixed", SlotSet("network_ok", False)))
    # Catch-up read; newest-id check; the turn's four events in one INSERT … RETURNING.
    assert statements == ["SELECT", "SELECT", "INSERT"]
    with store.engine.connect() as connection:
        # psycopg2 sends no BEGIN / COMMIT / ROLLBACK around statements in autocommit.
        assert connection.connection.dbapi_connection.autocommit is True
    await assert_same_as_rasa(store.engine.url.render_as_string(hide_password=False), "m-count", store)

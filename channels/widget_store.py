"""How far each widget session has received its conversation, kept across restarts.

One number per session: the timestamp of the latest bot event that a browser of the
session confirmed it received (``channels.widget_mailbox`` decides when that is).
It only moves forward. A SQLite file by default (one Rasa process); Redis when
several Rasa processes share the widget's sessions (``redis_url`` of the socket.io
channel, as ``deploy/credentials.yml`` sets it).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional, Protocol

# A session nobody opened for this long starts afresh: nothing older is replayed.
KEEP_SECONDS = 90 * 24 * 3600


class DeliveryStore(Protocol):
    """Per session, the timestamp up to which its bot events reached the browser."""

    async def delivered(self, session: str) -> Optional[float]:
        """The session's mark, or None for a session never seen."""

    async def advance(self, session: str, until: float) -> None:
        """Move the session's mark to ``until`` unless it is already later."""


OPEN_TIMEOUT_SECONDS = 30.0
WAL_ATTEMPTS = 20


class SQLiteDeliveryStore:
    """The marks in a SQLite file (created with its folder on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._connection: Optional[sqlite3.Connection] = None
        # The first confirmations arrive together on the default executor's threads.
        self._opening = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        with self._opening:
            if self._connection is None:
                self._connection = self._open()
        return self._connection

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=OPEN_TIMEOUT_SECONDS)
        # Switching to WAL takes the file exclusively and, while another process (the
        # other Rasa) opens it at the same moment, fails at once instead of waiting.
        for attempt in range(WAL_ATTEMPTS):
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if attempt == WAL_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        connection.execute("CREATE TABLE IF NOT EXISTS widget_delivered (session TEXT PRIMARY KEY, until REAL NOT NULL)")
        connection.execute("DELETE FROM widget_delivered WHERE until < ?", (time.time() - KEEP_SECONDS,))
        return connection

    def _read(self, session: str) -> Optional[float]:
        row = self._db().execute("SELECT until FROM widget_delivered WHERE session = ?", (session,)).fetchone()
        return None if row is None else float(row[0])

    def _write(self, session: str, until: float) -> None:
        self._db().execute(
            "INSERT INTO widget_delivered (session, until) VALUES (?, ?) "
            "ON CONFLICT(session) DO UPDATE SET until = max(until, excluded.until)",
            (session, until),
        )

    async def delivered(self, session: str) -> Optional[float]:
        """The session's mark, or None for a session never seen."""
        return await asyncio.to_thread(self._read, session)

    async def advance(self, session: str, until: float) -> None:
        """Move the session's mark to ``until`` unless it is already later."""
        await asyncio.to_thread(self._write, session, until)


# Compare and set in one step: two Rasa processes confirming at once keep the later mark.
_ADVANCE = """
local current = redis.call('GET', KEYS[1])
if not current or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
"""


class RedisDeliveryStore:
    """The marks in Redis, shared by every Rasa process (keys ``widget:delivered:<session>``)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self._redis = redis.asyncio.Redis.from_url(url)
        self._advance = self._redis.register_script(_ADVANCE)

    @staticmethod
    def _key(session: str) -> str:
        return f"widget:delivered:{session}"

    async def delivered(self, session: str) -> Optional[float]:
        """The session's mark, or None for a session never seen."""
        value = await self._redis.get(self._key(session))
        return None if value is None else float(value)

    async def advance(self, session: str, until: float) -> None:
        """Move the session's mark to ``until`` unless it is already later."""
        await self._advance(keys=[self._key(session)], args=[repr(until), KEEP_SECONDS])


def delivery_store(redis_url: Optional[str], sqlite_path: Path) -> DeliveryStore:
    """Redis when the channel has a ``redis_url``, else the SQLite file."""
    return RedisDeliveryStore(redis_url) if redis_url else SQLiteDeliveryStore(sqlite_path)

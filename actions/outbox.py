"""A durable outbox for escalations: nothing handed over is lost when the desk is down.

Each escalation is written to a SQLite file before the desk is asked. It leaves the
outbox only once the desk has confirmed it; the ticket number doubles as the desk's
idempotency key, so a retry after a lost response never creates a second case
(delivered exactly once). Escalations the desk refuses (4xx) stay in the file, marked,
for an operator to look at: none is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from actions.desk_client import DeskClient, DeskRejected, DeskUnavailable

logger = logging.getLogger(__name__)


class Outbox:
    """Escalations waiting for the desk, in a SQLite file.

    ``put`` stores one; ``flush(client)`` delivers what is pending, oldest first, and
    returns the desk's answers by ticket; ``run_forever`` retries in the background.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " ticket TEXT PRIMARY KEY, payload TEXT NOT NULL, created REAL NOT NULL,"
                " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, rejected INTEGER NOT NULL DEFAULT 0)"
            )
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=15, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def put(self, payload: Dict[str, Any]) -> None:
        """Keep an escalation until the desk confirms it (the same ticket is kept once)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO outbox (ticket, payload, created) VALUES (?, ?, ?)",
                (payload["ticket"], json.dumps(payload, ensure_ascii=False), time.time()),
            )

    def pending(self) -> List[Dict[str, Any]]:
        """Escalations not yet confirmed, oldest first (rejected ones excluded)."""
        with self._connect() as db:
            rows = db.execute("SELECT payload FROM outbox WHERE rejected = 0 ORDER BY created").fetchall()
        return [json.loads(row[0]) for row in rows]

    def rejected(self) -> List[Dict[str, Any]]:
        """Escalations the desk refused, with the reason, for an operator."""
        with self._connect() as db:
            rows = db.execute("SELECT ticket, last_error FROM outbox WHERE rejected = 1").fetchall()
        return [{"ticket": ticket, "error": error} for ticket, error in rows]

    async def flush(self, client: DeskClient) -> Dict[str, Dict[str, Any]]:
        """Deliver pending escalations; returns the desk's escalation per delivered ticket."""
        delivered: Dict[str, Dict[str, Any]] = {}
        async with self._lock:
            for payload in self.pending():
                ticket = payload["ticket"]
                try:
                    delivered[ticket] = await client.create_escalation(payload)
                except DeskUnavailable as error:
                    self._note(ticket, str(error), rejected=False)
                    break  # the desk is away: keep the order, try again later
                except DeskRejected as error:
                    logger.error("desk refused escalation %s: %s", ticket, error)
                    self._note(ticket, str(error), rejected=True)
                    continue
                with self._connect() as db:
                    db.execute("DELETE FROM outbox WHERE ticket = ?", (ticket,))
        return delivered

    def _note(self, ticket: str, error: str, rejected: bool) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, rejected = ? WHERE ticket = ?",
                (error, int(rejected), ticket),
            )

    async def run_forever(self, client: DeskClient, interval: float) -> None:
        """Retry every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.pending():
                    await self.flush(client)
            except Exception:  # noqa: BLE001 - the retry loop must survive one bad round
                logger.exception("outbox flush failed")


_retry_task: Optional[asyncio.Task] = None
_outboxes: Dict[Path, "Outbox"] = {}


def shared_outbox(path: Path) -> Outbox:
    """One outbox (and one lock) per file in this process."""
    if path not in _outboxes:
        _outboxes[path] = Outbox(path)
    return _outboxes[path]


def ensure_retrying(outbox: Outbox, client: DeskClient, interval: float) -> None:
    """Start the background retry loop once per action-server process."""
    global _retry_task
    if _retry_task is None or _retry_task.done():
        _retry_task = asyncio.get_running_loop().create_task(outbox.run_forever(client, interval))

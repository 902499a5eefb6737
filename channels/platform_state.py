"""What the WeChat channels remember between messages, shared by Rasa processes when
``redis_url`` is set.

* short-lived things (handled msgids, offered choices, the access token): Redis keys with
  a TTL, else a bounded in-process TTL/LRU map;
* things a restart must not lose (the 微信客服 sync cursor, messages held for a merchant,
  the per-merchant send ledger, the session state): Redis, else a small SQLite file
  (``var/…sqlite`` by default);
* a lock per name (one 微信客服 sync at a time per ``open_kfid``): a Redis lock, else an
  asyncio lock.

The send ledger is the platforms' rule "at most ``quota`` messages within ``window`` seconds
of the merchant's last message": ``heard_from`` opens the window, ``reserve_send`` takes one
message of the quota or says why not (checked and counted in one step, also in Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Tuple

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 48 * 3600
QUOTA = 5
MEMORY_ENTRIES = 10_000
DURABLE_SECONDS = 30 * 24 * 3600  # held messages and ledgers of merchants gone this long are dropped
MAX_HELD = 50  # per merchant; the oldest go first past that
LOCK_SECONDS = 60

WINDOW_CLOSED = "48-hour window closed"
QUOTA_USED = "5 messages sent since the merchant last wrote"

Clock = Callable[[], float]


def _ledger_reason(ledger: Optional[Dict[str, float]], now: float, window: float, quota: int) -> Optional[str]:
    if ledger is None:
        return None  # never heard of: the platform decides (its errcode holds the message)
    if now - ledger["last_in"] > window:
        return WINDOW_CLOSED
    if ledger["sent"] >= quota:
        return QUOTA_USED if quota == QUOTA else f"{quota} messages sent since the merchant last wrote"
    return None


class TtlLru:
    """A bounded map whose entries expire: the least recently used go first past ``capacity``."""

    def __init__(self, capacity: int = MEMORY_ENTRIES, clock: Clock = time.monotonic) -> None:
        self._items: "OrderedDict[str, Tuple[float, Any]]" = OrderedDict()
        self._capacity, self._clock = capacity, clock

    def get(self, key: str) -> Any:
        """The value, or None when absent or expired."""
        entry = self._items.get(key)
        if entry is None:
            return None
        if entry[0] < self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return entry[1]

    def put(self, key: str, value: Any, ttl: float) -> None:
        """Store for ``ttl`` seconds."""
        self._items[key] = (self._clock() + ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class LocalState:
    """One Rasa process: memory for the short-lived things, SQLite for the rest."""

    def __init__(self, path: Path, prefix: str, clock: Clock = time.time) -> None:
        self.path, self.prefix, self.clock = Path(path), prefix, clock
        self.memory = TtlLru()
        self._locks: Dict[str, asyncio.Lock] = {}
        self._db: Optional[sqlite3.Connection] = None

    def _sql(self) -> sqlite3.Connection:
        # Each statement is a single small row write: done inline, no thread hop.
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL)")
            db.execute("DELETE FROM state WHERE expires < ?", (self.clock(),))
            self._db = db
        return self._db

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def first_time(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds."""
        if self.memory.get(self._key(key)) is not None:
            return False
        self.memory.put(self._key(key), True, ttl)
        return True

    async def get(self, key: str) -> Any:
        """A short-lived value (JSON-able), or None."""
        return self.memory.get(self._key(key))

    async def put(self, key: str, value: Any, ttl: float) -> None:
        """Keep a short-lived value for ``ttl`` seconds."""
        self.memory.put(self._key(key), value, ttl)

    async def durable_get(self, key: str) -> Any:
        """A value that survives a restart, or None."""
        row = self._sql().execute("SELECT value FROM state WHERE key = ? AND expires >= ?", (self._key(key), self.clock())).fetchone()
        return None if row is None else json.loads(row[0])

    async def durable_put(self, key: str, value: Any, ttl: float = DURABLE_SECONDS) -> None:
        """Keep a value across restarts (``None`` deletes it)."""
        if value is None:
            self._sql().execute("DELETE FROM state WHERE key = ?", (self._key(key),))
            return
        self._sql().execute(
            "INSERT OR REPLACE INTO state (key, value, expires) VALUES (?, ?, ?)", (self._key(key), json.dumps(value), self.clock() + ttl)
        )

    async def heard_from(self, user: str) -> None:
        """The merchant wrote: the window opens again and the quota is full."""
        await self.durable_put(f"ledger:{user}", {"last_in": self.clock(), "sent": 0})

    async def reserve_send(self, user: str, window: float = WINDOW_SECONDS, quota: int = QUOTA) -> Optional[str]:
        """Take one message of the merchant's quota; the reason when none may go out."""
        ledger = await self.durable_get(f"ledger:{user}")
        reason = _ledger_reason(ledger, self.clock(), window, quota)
        if reason is None and ledger is not None:
            ledger["sent"] += 1
            await self.durable_put(f"ledger:{user}", ledger)
        return reason

    async def release_send(self, user: str) -> None:
        """Give back a reserved message the platform refused (it did not count)."""
        ledger = await self.durable_get(f"ledger:{user}")
        if ledger is not None and ledger["sent"] > 0:
            ledger["sent"] -= 1
            await self.durable_put(f"ledger:{user}", ledger)

    async def hold(self, user: str, item: Dict[str, Any]) -> None:
        """Keep a message for the merchant's next message (at most ``MAX_HELD``)."""
        held = (await self.durable_get(f"held:{user}")) or []
        await self.durable_put(f"held:{user}", (held + [item])[-MAX_HELD:])

    async def take_held(self, user: str) -> List[Dict[str, Any]]:
        """The merchant's held messages, oldest first, removed from the store."""
        held = (await self.durable_get(f"held:{user}")) or []
        await self.durable_put(f"held:{user}", None)
        return held

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        """One holder at a time in this process."""
        async with self._locks.setdefault(name, asyncio.Lock()):
            yield

    async def close(self) -> None:
        """Close the SQLite file."""
        if self._db is not None:
            self._db.close()
            self._db = None


# Check the window and the quota and count the message in one step.
_RESERVE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return '' end
local ledger = cjson.decode(raw)
if tonumber(ARGV[1]) - ledger['last_in'] > tonumber(ARGV[2]) then return 'window' end
if ledger['sent'] >= tonumber(ARGV[3]) then return 'quota' end
ledger['sent'] = ledger['sent'] + 1
redis.call('SET', KEYS[1], cjson.encode(ledger), 'KEEPTTL')
return ''
"""

# Give back one message of the quota (the platform refused it), in one step too.
_RELEASE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ledger = cjson.decode(raw)
if ledger['sent'] > 0 then
  ledger['sent'] = ledger['sent'] - 1
  redis.call('SET', KEYS[1], cjson.encode(ledger), 'KEEPTTL')
end
return 1
"""


class RedisState(LocalState):
    """Every Rasa process of the deployment: all of it in Redis (keys ``<prefix>:…``)."""

    def __init__(self, url: str, prefix: str, clock: Clock = time.time) -> None:
        import redis.asyncio

        # No file: every durable method below is Redis's, the SQLite file is never opened.
        super().__init__(Path(), prefix, clock)
        self.redis = redis.asyncio.Redis.from_url(url)
        self._reserve = self.redis.register_script(_RESERVE)
        self._release = self.redis.register_script(_RELEASE)

    async def first_time(self, key: str, ttl: float) -> bool:
        """SET NX: one process in the deployment sees it first."""
        return bool(await self.redis.set(self._key(key), "1", nx=True, ex=max(1, int(ttl))))

    async def get(self, key: str) -> Any:
        """A short-lived value, or None."""
        raw = await self.redis.get(self._key(key))
        return None if raw is None else json.loads(raw)

    async def put(self, key: str, value: Any, ttl: float) -> None:
        """Keep a short-lived value for ``ttl`` seconds."""
        await self.redis.set(self._key(key), json.dumps(value), ex=max(1, int(ttl)))

    async def durable_get(self, key: str) -> Any:
        """The value, or None."""
        return await self.get(key)

    async def durable_put(self, key: str, value: Any, ttl: float = DURABLE_SECONDS) -> None:
        """Keep the value (``None`` deletes it)."""
        if value is None:
            await self.redis.delete(self._key(key))
        else:
            await self.put(key, value, ttl)

    async def reserve_send(self, user: str, window: float = WINDOW_SECONDS, quota: int = QUOTA) -> Optional[str]:
        """Take one message of the quota atomically (two processes cannot both take the last)."""
        answer = await self._reserve(keys=[self._key(f"ledger:{user}")], args=[self.clock(), window, quota])
        answer = answer.decode() if isinstance(answer, bytes) else answer
        return {"window": WINDOW_CLOSED, "quota": _ledger_reason({"last_in": 0, "sent": quota}, 0, 1, quota)}.get(answer)

    async def release_send(self, user: str) -> None:
        """Give back a reserved message atomically."""
        await self._release(keys=[self._key(f"ledger:{user}")])

    async def hold(self, user: str, item: Dict[str, Any]) -> None:
        """Append to the merchant's list (two processes holding at once both keep theirs)."""
        key = self._key(f"held:{user}")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(item)).ltrim(key, -MAX_HELD, -1).expire(key, DURABLE_SECONDS)
            await pipe.execute()

    async def take_held(self, user: str) -> List[Dict[str, Any]]:
        """Read and delete the merchant's list in one transaction."""
        key = self._key(f"held:{user}")
        async with self.redis.pipeline(transaction=True) as pipe:
            items, _ = await pipe.lrange(key, 0, -1).delete(key).execute()
        return [json.loads(item) for item in items]

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        """One holder at a time across the processes (expires if a holder dies).

        A live holder keeps it: the 微信客服 sync holds it while Rasa answers a backlog,
        which may take longer than the expiry meant for a holder that died."""
        lock = self.redis.lock(self._key(f"lock:{name}"), timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS)
        async with lock:
            renewal = asyncio.get_running_loop().create_task(_keep_renewed(lock))
            try:
                yield
            finally:
                renewal.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewal

    async def close(self) -> None:
        """Close the Redis connections."""
        await self.redis.close()


async def _keep_renewed(lock: Any) -> None:
    """Reset the lock's expiry every third of it while its holder lives."""
    while True:
        await asyncio.sleep(LOCK_SECONDS / 3)
        try:
            await lock.reacquire()
        except Exception:  # noqa: BLE001 - Redis away: the lock expires as for a dead holder
            logger.warning("lock %s not renewed", lock.name)
            return


def platform_state(redis_url: Optional[str], path: Path, prefix: str, clock: Clock = time.time) -> LocalState:
    """Redis when the channel has a ``redis_url``, else memory and the SQLite file ``path``."""
    return RedisState(redis_url, prefix, clock) if redis_url else LocalState(path, prefix, clock)

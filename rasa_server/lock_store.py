"""Rasa's Redis ticket lock in two atomic round trips per message instead of seven.

Rasa 3.6's ``RedisLockStore`` serves each message with GET+SET to issue a ticket, a GET to
see whose turn it is, GET+SET to hand the ticket back, a GET to see whether anyone waits
and a DEL: seven blocking round trips with a JSON decode each (py-spy: ~6 % of a
message's CPU). Between one process's GET and its SET another process can write the same
key, so two Rasa processes taking a ticket at once can both get the same number.

``AtomicRedisLockStore`` keeps the same key, the same stored JSON (a stock
``RedisLockStore`` reads and continues its locks and the other way round), the same ticket
rules (``rasa.core.lock.TicketLock``: numbers follow the last live ticket, a ticket expires
after its lifetime, the lowest live ticket is served) and the client's clock. Issuing a
ticket, pruning expired ones and handing a ticket back each run as one Lua script, atomic
in Redis; issuing also answers whether the ticket is served at once. Waiting for a turn
is upstream's loop.

Use it in endpoints.yml with the options of Rasa's ``redis`` lock store::

    lock_store:
      type: rasa_server.lock_store.AtomicRedisLockStore
      url: ${REDIS_HOST}
      port: 6379
      key_prefix: pos1000
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, Callable, Optional, Text, Tuple

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

# Both scripts' common part: the lock's live tickets (Rasa: a ticket has expired when
# now > expires) and writing them back in TicketLock.dumps' shape.
_TICKETS = """
local function live(raw, now)
  local tickets = {}
  if raw then
    for _, encoded in ipairs(cjson.decode(raw).tickets or {}) do
      local ticket = cjson.decode(encoded)
      if not (now > ticket.expires) then tickets[#tickets + 1] = ticket end
    end
  end
  return tickets
end
local function save(key, conversation_id, tickets)
  local encoded = {}
  for i, ticket in ipairs(tickets) do
    encoded[i] = cjson.encode({number = ticket.number, expires = ticket.expires})
  end
  local raw = cjson.encode({conversation_id = conversation_id, tickets = encoded})
  redis.call('SET', key, raw)
  return raw
end
local now = tonumber(ARGV[2])
"""

# KEYS[1] lock key; ARGV conversation id, now, lifetime
#   -> {ticket number, number now served (TicketLock.now_serving), stored lock}
_ISSUE = (
    _TICKETS
    + """
local tickets = live(redis.call('GET', KEYS[1]), now)
local number = 0
if #tickets > 0 then number = tickets[#tickets].number + 1 end
tickets[#tickets + 1] = {number = number, expires = now + tonumber(ARGV[3])}
local raw = save(KEYS[1], ARGV[1], tickets)
return {number, tickets[1].number, raw}
"""
)

# KEYS[1] lock key; ARGV conversation id, now, ticket -> 1 when the lock was deleted
_RETURN = (
    _TICKETS
    + """
local raw = redis.call('GET', KEYS[1])
if not raw then return 1 end
local ticket, rest = tonumber(ARGV[3]), {}
for _, held in ipairs(live(raw, now)) do
  if held.number ~= ticket then rest[#rest + 1] = held end
end
if #rest == 0 then redis.call('DEL', KEYS[1]) return 1 end
save(KEYS[1], ARGV[1], rest)
return 0
"""
)

# KEYS[1] lock key; ARGV conversation id, now: drop expired tickets of an existing lock
_PRUNE = (
    _TICKETS
    + """
local raw = redis.call('GET', KEYS[1])
if raw then save(KEYS[1], ARGV[1], live(raw, now)) end
return 0
"""
)


class AtomicRedisLockStore(RedisLockStore):
    """``RedisLockStore`` whose ticket changes are single atomic Lua scripts."""

    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        """Takes ``RedisLockStore``'s options, from an endpoint config (``url`` is the
        host) or as keyword arguments; ``clock`` is the time tickets expire by."""
        if endpoint_config is not None:
            kwargs = {"host": endpoint_config.url, **endpoint_config.kwargs, **kwargs}
        super().__init__(**kwargs)
        self.clock = clock
        self._issue = self.red.register_script(_ISSUE)
        self._return = self.red.register_script(_RETURN)
        self._prune = self.red.register_script(_PRUNE)

    def _key(self, conversation_id: Text) -> Text:
        return self.key_prefix + conversation_id

    def issue_and_get(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME) -> Tuple[int, bool, TicketLock]:
        """Issue a ticket; return its number, whether it is served now, and the lock as
        stored right after."""
        try:
            number, serving, raw = self._issue(
                keys=[self._key(conversation_id)], args=[conversation_id, repr(self.clock()), repr(float(lock_lifetime))]
            )
        except Exception as e:  # upstream's error for any failure to issue
            raise LockError(f"Error while acquiring lock. Error:\n{e}") from e
        return int(number), int(serving) == int(number), TicketLock.from_dict(json.loads(raw))

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME) -> int:
        """Issue a ticket (see ``LockStore.issue_ticket``), atomically."""
        return self.issue_and_get(conversation_id, lock_lifetime)[0]

    def update_lock(self, conversation_id: Text) -> None:
        """Drop the lock's expired tickets (see ``LockStore.update_lock``), atomically."""
        self._prune(keys=[self._key(conversation_id)], args=[conversation_id, repr(self.clock())])

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Hand the ticket back and delete the lock when no one else holds a ticket
        (``LockStore.finish_serving`` then ``cleanup``), atomically."""
        self._return(keys=[self._key(conversation_id)], args=[conversation_id, repr(self.clock()), ticket_number])

    @asynccontextmanager
    async def lock(
        self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME, wait_time_in_seconds: float = 1
    ) -> AsyncGenerator[TicketLock, None]:
        """``LockStore.lock``: the issuing round trip also tells whether the ticket is
        served at once; only otherwise does upstream's waiting loop poll."""
        ticket, served, lock = self.issue_and_get(conversation_id, lock_lifetime)
        try:
            if not served:
                lock = await self._acquire_lock(conversation_id, ticket, wait_time_in_seconds)
            yield lock
        finally:
            self.cleanup(conversation_id, ticket)

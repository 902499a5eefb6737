"""Several desk processes behind one address: their live events shared over Redis pub/sub.

With ``DESK_REDIS_URL`` set, a process's hub hands each event to this bus instead of
delivering it itself; the bus publishes it on one Redis channel and every process
(this one included) delivers what it receives to its own consoles. So an agent on
desk A sees a change made through desk B. When Redis is unreachable a process still
delivers its own events locally (and says so in the log): its consoles stay live, the
others catch up when their browsers re-read the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Optional

import redis.asyncio as redis

from support_desk.live import Event, LiveHub

logger = logging.getLogger(__name__)
CHANNEL = "pos1000:desk:live"
OUTGOING_LIMIT = 10_000


class RedisBus:
    """Publishes this process's hub events to Redis and delivers every process's."""

    def __init__(self, hub: LiveHub, url: str, channel: str = CHANNEL) -> None:
        self.hub = hub
        self.url = url
        self.channel = channel
        self._client: Optional[redis.Redis] = None
        self._outgoing: "asyncio.Queue[Event]" = asyncio.Queue(OUTGOING_LIMIT)
        self._tasks: list = []

    async def start(self) -> None:
        """Connect, subscribe, and take over the hub's publishing."""
        self._client = redis.from_url(self.url)
        pubsub = self._client.pubsub()
        await pubsub.subscribe(self.channel)
        self._tasks = [asyncio.create_task(self._receive(pubsub)), asyncio.create_task(self._send())]
        self.hub.forward = self.send

    def send(self, event: Event) -> None:
        """Queue an event for Redis, in order (the hub calls this from the desk's writes)."""
        try:
            self._outgoing.put_nowait(event)
        except asyncio.QueueFull:
            logger.warning("Redis bus backed up: event for case %s delivered here only", event.get("id"))
            self.hub.deliver(event)

    async def _send(self) -> None:
        assert self._client is not None
        while True:
            event = await self._outgoing.get()
            try:
                await self._client.publish(self.channel, json.dumps(event))
            except (redis.RedisError, OSError) as problem:
                logger.warning("Redis unreachable (%s): event for case %s delivered here only", problem.__class__.__name__, event.get("id"))
                self.hub.deliver(event)

    async def _receive(self, pubsub: "redis.client.PubSub") -> None:
        while True:
            try:
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        event = json.loads(message["data"])
                    except (TypeError, ValueError):
                        continue
                    if isinstance(event, dict):
                        self.hub.deliver(event)
            except (redis.RedisError, OSError) as problem:
                logger.warning("Redis subscription lost (%s), reconnecting", problem.__class__.__name__)
                await asyncio.sleep(1)
                with contextlib.suppress(redis.RedisError, OSError):
                    await pubsub.subscribe(self.channel)

    async def close(self) -> None:
        """Stop both tasks and the connection; the hub delivers locally again."""
        self.hub.forward = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.close()

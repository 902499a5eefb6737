"""Changes to the desk's cases, pushed to every console that is open.

``DeskStore`` publishes one small event after each write has committed:
``{"type": "case", "id": <escalation id>, "change": "created" | "updated" | "message"}``.
A subscriber (a console's event stream) gets each event once, in order; one that falls
more than ``QUEUE_LIMIT`` events behind is dropped and reconnects, then reads the state
again, so a slow browser never holds the desk's memory.

This is the in-process hub (one desk process). Several desk processes behind one
address share their events through an outside bus (``support_desk.live_bus``, Redis
pub/sub): ``publish`` then hands the event to the bus, which feeds ``deliver`` in each.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Callable, Dict, Optional, Set

QUEUE_LIMIT = 1000

Event = Dict[str, Any]


class LiveHub:
    """Fan-out of desk events to the subscribers of this process."""

    def __init__(self) -> None:
        self._subscribers: Set["asyncio.Queue[Optional[Event]]"] = set()
        # Set by an outside bus: every process's subscribers then get the event from it.
        self.forward: Optional[Callable[[Event], None]] = None

    def publish(self, event: Event) -> None:
        """Hand an event to every subscriber (the desk's own writes call this)."""
        if self.forward is not None:
            self.forward(event)
        else:
            self.deliver(event)

    def deliver(self, event: Event) -> None:
        """Put an event into every subscriber's queue; drop those that are full."""
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # Dropped: the stream sees it is no longer subscribed, ends, and the
                # browser reconnects and reads the state afresh.
                self._subscribers.discard(queue)

    def drop_all(self) -> None:
        """End every stream (the desk is shutting down; browsers reconnect elsewhere)."""
        for queue in list(self._subscribers):
            self._subscribers.discard(queue)
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)  # wakes a stream that is waiting

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator["asyncio.Queue[Optional[Event]]"]:
        """A queue of this process's events for as long as the caller listens."""
        queue: "asyncio.Queue[Optional[Event]]" = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def subscribed(self, queue: "asyncio.Queue[Optional[Event]]") -> bool:
        """Is this queue still fed (False once it fell behind and was dropped)?"""
        return queue in self._subscribers

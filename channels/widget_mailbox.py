"""What a widget session missed, sent to its browser when it connects again.

The stock rasa-webchat widget keeps its messages in the browser's storage and, on
every socket connect, only says which session it is (``session_request``). So the
server keeps, per session, how far the browser has received the conversation (a mark
in ``channels.widget_store``) and, when a socket of the session joins, sends that
socket every bot event of the conversation after the mark, rendered as live frames.

Received, not merely sent: a socket.io emit says nothing about the browser (a closed
tab or a lost network leaves the server writing into a dead connection until the
engine.io ping times out). After the last frame of each bot event the mailbox queues
an engine.io ping on that socket; the browser's engine.io answers every ping with a
pong, on the same ordered connection, so a pong proves every frame queued before its
ping arrived. Only then does the session's mark move to that event. Closed tab, lost
network, next morning, another tab of the same browser, a Rasa restart: whatever was
not proven received is after the mark and is sent on the next connect. The one
duplicate possible is an event whose frames arrived but whose pong was lost (the tab
closed or the network dropped within a round trip of it); nothing is lost.

Races at the join: the catch-up runs inside Rasa's conversation lock, the lock every
message and every ``/conversations/{id}/tracker/events`` call holds while it creates,
sends and stores bot events. So each bot event was either stored before the catch-up
reads the tracker (and is sent by it, the socket not yet being able to receive it
live) or is created after the socket joined the room (and arrives live, after the
mark's events). With the Redis fan-out a frame published by another Rasa process can
reach this one after the catch-up has sent the same event; such a frame (the socket's
``replayed_until`` covers it) is not sent again.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncContextManager, Callable, Deque, Dict, List, Optional

from engineio import packet as eio_packet
from rasa.core.lock_store import LockError
from rasa.shared.core.events import BotUttered
from sanic import Blueprint

from channels.widget_output import TAG_KEY, WidgetOutput
from channels.widget_store import DeliveryStore

logger = logging.getLogger(__name__)


@dataclass
class Link:
    """One connected socket of a widget session, as far as delivery goes."""

    sid: str
    eio_sid: str
    session: str
    # Timestamp of the latest bot event whose last frame was queued to this socket.
    queued: Optional[float] = None
    # Per ping sent and not yet answered, the ``queued`` it would prove (oldest first).
    pings: Deque[Optional[float]] = field(default_factory=deque)
    # The newest event sent by the catch-up: a live copy of it or anything older is a duplicate.
    replayed_until: Optional[float] = None


class WidgetMailbox:
    """Delivery marks and catch-up for the socket.io channel's sessions (one per channel)."""

    def __init__(self, sio: Any, bot_message_evt: str, namespace: Optional[str], store: DeliveryStore) -> None:
        self.sio = sio
        self.bot_message_evt = bot_message_evt
        self.namespace = namespace or "/"
        self.store = store
        self.app: Any = None
        self._by_sid: Dict[str, Link] = {}
        self._by_eio: Dict[str, Link] = {}

    def install(self, blueprint: Blueprint) -> None:
        """Wrap the channel's ``session_request`` and ``disconnect`` handlers and its emits."""
        handlers: Dict[str, Callable] = self.sio.handlers.setdefault(self.namespace, {})
        handlers["session_request"] = self._joining(handlers["session_request"])
        handlers["disconnect"] = self._leaving(handlers["disconnect"])
        # Every frame to a socket of this process passes here, whichever process emitted
        # it (the Redis manager delivers remote emits through the same call).
        self.sio._emit_internal = self._tracking(self.sio._emit_internal)

        @blueprint.listener("before_server_start")
        async def keep_app(app: Any, _loop: Any) -> None:
            self.app = app

    def _joining(self, original: Callable) -> Callable:
        async def session_request(sid: str, data: Optional[Dict[str, Any]] = None) -> None:
            data = dict(data or {})
            session = data.get("session_id") or uuid.uuid4().hex
            data["session_id"] = session
            try:
                async with self._conversation_lock(session):
                    await original(sid, data)
                    link = self._attach(sid, session)
                    if link is not None:
                        await self._catch_up(link)
            except LockError as locked:
                logger.warning("widget session %s: no catch-up this time (%s)", session, locked)
                if sid not in self._by_sid:
                    await original(sid, data)
                    self._attach(sid, session)

        return session_request

    def _leaving(self, original: Callable) -> Callable:
        async def disconnect(sid: str, *args: Any) -> None:
            link = self._by_sid.pop(sid, None)
            if link is not None:
                self._by_eio.pop(link.eio_sid, None)
            return await original(sid, *args)

        return disconnect

    def _agent(self) -> Any:
        return getattr(getattr(self.app, "ctx", None), "agent", None)

    def _conversation_lock(self, session: str) -> AsyncContextManager:
        agent = self._agent()
        if agent is None or getattr(agent, "lock_store", None) is None:
            return contextlib.nullcontext()
        return agent.lock_store.lock(session)

    def _attach(self, sid: str, session: str) -> Optional[Link]:
        """Start following a socket's pings and pongs (a socket asking again is re-linked)."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, self.namespace)
        socket = self.sio.eio.sockets.get(eio_sid) if eio_sid else None
        if socket is None:  # gone already
            return None
        previous = self._by_sid.get(sid)
        if previous is not None and previous.session == session:
            return previous
        link = Link(sid=sid, eio_sid=eio_sid, session=session)
        if previous is not None:
            link.pings = previous.pings
        elif socket.last_ping:
            link.pings.append(None)  # a ping already on its way: its pong proves nothing of ours
        self._by_sid[sid] = link
        self._by_eio[eio_sid] = link
        if previous is None:
            self._follow(socket, link)
        return link

    def _follow(self, socket: Any, link: Link) -> None:
        send, receive = socket.send, socket.receive

        async def sending(pkt: Any) -> None:
            if pkt.packet_type == eio_packet.PING:
                current = self._by_eio.get(link.eio_sid, link)
                current.pings.append(current.queued)
            await send(pkt)

        async def receiving(pkt: Any) -> None:
            current = self._by_eio.get(link.eio_sid, link)
            if pkt.packet_type == eio_packet.PONG and current.pings:
                # Pongs come in ping order; a lost pong only makes later ones prove less.
                proven = current.pings.popleft()
                if proven is not None:
                    await self._confirm(current.session, proven)
            await receive(pkt)

        # Per socket object, not engine.io's class: only this channel's sockets change.
        socket.send, socket.receive = sending, receiving

    async def _confirm(self, session: str, until: float) -> None:
        try:
            await self.store.advance(session, until)
        except Exception as failed:  # a store outage costs a duplicate later, never a loss
            logger.warning("widget session %s: delivery mark not saved (%s)", session, failed)

    async def _catch_up(self, link: Link) -> None:
        """Send the socket the session's bot events after its mark, oldest first."""
        mark = await self.store.delivered(link.session)
        if mark is None:  # a session seen for the first time: it starts here
            await self.store.advance(link.session, time.time())
            return
        agent = self._agent()
        tracker = await agent.tracker_store.retrieve_full_tracker(link.session) if agent else None
        missed = missed_events(tracker.events if tracker else [], mark)
        if not missed:
            return
        logger.info("widget session %s: %d bot events sent on reconnect", link.session, len(missed))
        link.replayed_until = missed[-1].timestamp
        output = WidgetOutput(self.sio, self.bot_message_evt, tagged=True, replay=True)
        for event in missed:
            await output.send_response(link.sid, event.message())

    def _tracking(self, emit_internal: Callable) -> Callable:
        async def emit(eio_sid: str, event: str, data: Any, namespace: Optional[str] = None, id: Any = None) -> None:
            if event != self.bot_message_evt or not isinstance(data, dict):
                return await emit_internal(eio_sid, event, data, namespace, id)
            tag = data.get(TAG_KEY)
            if not isinstance(tag, dict):
                return await emit_internal(eio_sid, event, data, namespace, id)
            data = {key: value for key, value in data.items() if key != TAG_KEY}
            link = self._by_eio.get(eio_sid)
            stamp, final = tag.get("timestamp"), tag.get("final")
            if link is None or not isinstance(stamp, (int, float)):
                return await emit_internal(eio_sid, event, data, namespace, id)
            if not tag.get("replay") and link.replayed_until is not None and stamp <= link.replayed_until:
                return None  # the catch-up sent this event already
            await emit_internal(eio_sid, event, data, namespace, id)
            if final:
                link.queued = stamp if link.queued is None else max(link.queued, stamp)
                await self.sio.eio.send_packet(eio_sid, eio_packet.Packet(eio_packet.PING))
            return None

        return emit


def missed_events(events: List[Any], mark: float) -> List[BotUttered]:
    """The bot events after ``mark``: every one the merchant was sent, as Rasa sent it live."""
    return [event for event in events if isinstance(event, BotUttered) and (event.timestamp or 0) > mark]

"""The desk announces each committed change of a case to every open console."""

from __future__ import annotations

import asyncio

from support_desk.db import create_engine, migrate
from support_desk.live import QUEUE_LIMIT, LiveHub
from support_desk.store import DeskStore, NewEscalation


async def test_each_write_is_announced_once_after_it_committed(tmp_path):
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    migrate(url)
    store = DeskStore(create_engine(url))
    seen = []
    async with store.hub.subscribe() as queue:
        case, created = await store.create_escalation(
            NewEscalation(sender_id="m-1", channel="socketio", language="zh", ticket="PX-AAAAAA"), None
        )
        # The same ticket again creates nothing and announces nothing.
        await store.create_escalation(NewEscalation(sender_id="m-1", channel="socketio", language="zh", ticket="PX-AAAAAA"), None)
        await store.claim(case["id"], "li")
        reply = await store.add_agent_reply(case["id"], "您好", "li")
        await store.mark_delivery(reply["id"], None)
        await store.resolve(case["id"], "done", "network", "已解决")
        while not queue.empty():
            event = queue.get_nowait()
            # What a subscriber is told is already readable.
            assert (await store.get_escalation(event["id"]))["id"] == case["id"]
            seen.append(event["change"])
    assert created
    assert seen == ["created", "updated", "message", "message", "updated"]


async def test_a_subscriber_that_falls_behind_is_dropped_not_buffered():
    hub = LiveHub()
    async with hub.subscribe() as slow, hub.subscribe() as fast:
        for n in range(QUEUE_LIMIT + 1):
            hub.publish({"type": "case", "id": n, "change": "message"})
            if not fast.empty():
                fast.get_nowait()
        assert not hub.subscribed(slow)
        assert hub.subscribed(fast)
        assert slow.qsize() == QUEUE_LIMIT
    await asyncio.sleep(0)

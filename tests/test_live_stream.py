"""The console's live stream (GET /console/events) and the case page's live read."""

from __future__ import annotations

import asyncio
import json
import time

from support_desk.api import STORE
from support_desk.live_stream import HEARTBEAT
from tests.harness.desk_app import AUTH, console_client
from tests.harness.desk_app import login


async def next_block(response) -> str:
    """One server-sent-events block (up to the blank line)."""
    lines = []
    while True:
        line = (await asyncio.wait_for(response.content.readline(), 10)).decode()
        if line == "\n":
            return "".join(lines)
        lines.append(line)


async def test_the_stream_needs_a_login(tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url) as client:
        response = await client.get("/console/events")
        assert response.status == 401 and await response.json() == {"error": "login required"}
        response = await client.get("/console/live/cases/1")
        assert response.status == 401 and await response.json() == {"error": "login required"}


async def test_each_change_of_a_case_arrives_as_an_event_and_idle_streams_get_heartbeats(tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url) as client:
        client.app[HEARTBEAT] = 0.2
        await login(client)
        stream = await client.get("/console/events")
        assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        assert await next_block(stream) == "retry: 1000\n: connected\n"
        assert await next_block(stream) == ": heartbeat\n"
        created = await client.post("/api/escalations", headers=AUTH, json={"sender_id": "m-1", "ticket": "PX-7K2Q9M"})
        case_id = (await created.json())["id"]
        block = await next_block(stream)
        assert block.startswith("event: case\ndata: ")
        assert json.loads(block.split("data: ", 1)[1]) == {"type": "case", "id": case_id, "change": "created"}
        await client.post(
            "/api/rasa/events",
            headers=AUTH,
            json={"events": [{"sender_id": "m-1", "event": "user", "text": "还要等多久", "timestamp": time.time() + 1}]},
        )
        block = await next_block(stream)
        assert json.loads(block.split("data: ", 1)[1])["change"] == "message"
        live = await (await client.get(f"/console/live/cases/{case_id}")).json()
        assert live["status"] == "open" and live["status_text"] == "待处理"
        assert [m["text"] for m in live["transcript"]] == ["还要等多久"]
        stream.close()


async def test_a_stream_dropped_by_the_hub_ends_as_at_a_desk_shutdown(tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url) as client:
        await login(client)
        stream = await client.get("/console/events")
        await next_block(stream)
        client.app[STORE].hub.drop_all()
        assert await asyncio.wait_for(stream.content.read(), 10) == b""

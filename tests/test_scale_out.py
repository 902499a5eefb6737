"""Two Rasa processes behind nginx, sharing PostgreSQL and Redis — the scale-out topology of
deploy/docker-compose.yml and of `make bench`, started for real on 127.0.0.1.

Proves: a conversation whose messages alternate between the processes keeps every turn in
order (shared tracker store, Redis lock store), and an agent's reply posted to one process
reaches a widget user connected to the other (socket.io through python-socketio's Redis
manager, deploy/credentials.yml).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from typing import Iterator

import pytest
import socketio

from bench.servers import redis_server
from bench.stack import RasaStack
from support_desk.rasa_client import RasaClient
from tests.pg_server import PostgresServer
from tests.harness.processes import MODEL

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(
        not shutil.which("redis-server") or not shutil.which("nginx"), reason="scripts/system_packages.sh installs redis-server and nginx"
    ),
]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Iterator[RasaStack]:
    run_dir = tmp_path_factory.mktemp("scale-out")
    postgres = PostgresServer().start()
    redis, redis_url = redis_server(run_dir)
    stack = RasaStack(
        run_dir,
        MODEL,
        postgres.create_database("tracker"),
        lock_store_url=redis_url,
        rasa_processes=2,
        endpoints_file="deploy/endpoints.yml",
        credentials_file="deploy/credentials.yml",
        extra_env={"SOCKETIO_REDIS_URL": redis_url + "/1"},
    )
    try:
        yield stack.start()
    finally:
        stack.stop()
        redis.stop()
        postgres.stop()


def rest(url: str, sender: str, message: str) -> list:
    request = urllib.request.Request(
        f"{url}/webhooks/rest/webhook",
        method="POST",
        data=json.dumps({"sender": sender, "message": message}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_a_conversation_split_across_processes_keeps_every_turn(two_processes):
    first, second = two_processes.process_urls
    messages = ["walk me through the checks", "still 1000", "it's an A920", "works now"]
    answers = [rest((first, second)[number % 2], "split-conversation", text) for number, text in enumerate(messages)]
    assert all(answers), answers
    # The restart step (asked after the model) names the A920's own steps, so the second
    # process continued the form the first one started.
    assert "A920" in " ".join(item.get("text", "") for item in answers[2])
    events = two_processes.tracker("split-conversation")["events"]
    assert [e["text"] for e in events if e["event"] == "user"] == messages
    assert any(e["event"] == "slot" and e["name"] == "fixed_step" and e["value"] == "restart" for e in events)


def test_agent_reply_through_one_process_reaches_a_widget_user_on_the_other(two_processes):
    first, second = two_processes.process_urls

    async def scenario() -> list:
        client = socketio.AsyncClient(reconnection=False)
        received: asyncio.Queue = asyncio.Queue()
        client.on("bot_uttered", lambda data: received.put_nowait(data))
        confirmed = asyncio.Event()
        client.on("session_confirm", lambda _data: confirmed.set())
        # Long polling: python-engineio's websocket client needs a newer aiohttp than Rasa's.
        await client.connect(first, transports=["polling"], socketio_path="/socket.io")
        try:
            await client.emit("session_request", {"session_id": "widget-user-1"})
            await asyncio.wait_for(confirmed.wait(), 30)
            await client.emit("user_uttered", {"message": "你好", "session_id": "widget-user-1"})
            greeting = await asyncio.wait_for(received.get(), 60)
            # The desk's own client posts the agent's reply to the *other* process.
            rasa = RasaClient(second, two_processes.token)
            try:
                await rasa.append_events("widget-user-1", [{"event": "bot", "text": "客服小王：您好，我来帮您看看"}])
            finally:
                await rasa.close()
            reply = await asyncio.wait_for(received.get(), 30)
            return [greeting, reply]
        finally:
            await client.disconnect()

    greeting, reply = asyncio.run(scenario())
    assert greeting.get("text")
    assert reply["text"] == "客服小王：您好，我来帮您看看"

"""Two real desk processes on one database and a real Redis: a change made through desk A
reaches a console stream open on desk B."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading

import aiohttp
import pytest

from bench.servers import free_port, redis_server
from tests.test_conversations import ROOT, wait_for
from tests.test_desk_console import csrf_of

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"),
                                reason="scripts/system_packages.sh installs redis-server")
TOKEN = "live-bus-token"


class Desk:
    """``python -m support_desk`` with the Redis bus, on a free loopback port."""

    def __init__(self, database: str, redis_url: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "DESK_PORT": self.url.rsplit(":", 1)[1], "DESK_API_TOKEN": TOKEN,
               "DESK_SECRET_KEY": "live-bus-secret-key-0123456789abcdef", "DESK_DATABASE_URL": database,
               "DESK_REDIS_URL": redis_url}
        self.process = subprocess.Popen([sys.executable, "-m", "support_desk"], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(f"{self.url}/health", self.process, "support desk")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def desks(tmp_path_factory):
    directory = tmp_path_factory.mktemp("live-bus")
    redis, redis_url = redis_server(directory)
    database = f"sqlite:///{directory / 'desk.db'}"
    first = Desk(database, redis_url)  # migrates the database and prints the admin password
    password = None
    for _ in range(50):
        line = first.process.stdout.readline()
        if "password (shown once):" in line:
            password = line.rsplit(":", 1)[1].strip()
            break
    # Keep reading its log so a full pipe never stalls it.
    threading.Thread(target=first.process.stdout.read, daemon=True).start()
    second = Desk(database, redis_url)
    threading.Thread(target=second.process.stdout.read, daemon=True).start()
    yield first, second, password
    for desk in (first, second):
        desk.stop()
    redis.stop()


async def next_event(stream: aiohttp.ClientResponse) -> dict:
    while True:
        line = (await asyncio.wait_for(stream.content.readline(), 15)).decode()
        if line.startswith("data: "):
            return json.loads(line[6:])


async def test_a_change_through_desk_a_reaches_a_console_on_desk_b(desks):
    a, b, password = desks
    assert password, "the first desk created the admin account"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as agent:
        form = await (await agent.get(f"{b.url}/console/login")).text()
        await agent.post(f"{b.url}/console/login", data={"csrf": csrf_of(form), "username": "admin",
                                                         "password": password})
        async with agent.get(f"{b.url}/console/events") as stream:
            assert stream.status == 200
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                created = await (await api.post(f"{a.url}/api/escalations",
                                                json={"sender_id": "m-bus", "ticket": "PX-BBBBBB"})).json()
                assert await next_event(stream) == {"type": "case", "id": created["id"], "change": "created"}
                await api.post(f"{a.url}/api/escalations/{created['id']}/claim", json={"agent": "wang"})
                assert await next_event(stream) == {"type": "case", "id": created["id"], "change": "updated"}

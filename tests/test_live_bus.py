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
import time
from typing import List, Optional

import aiohttp
import pytest

from bench.servers import free_port, redis_server
from tests.test_conversations import ROOT, wait_for
from tests.test_desk_console import csrf_of

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"),
                                reason="scripts/system_packages.sh installs redis-server")
TOKEN = "live-bus-token"


class Desk:
    """``python -m support_desk`` (with the Redis bus when given one) on a loopback port."""

    def __init__(self, database: str, redis_url: Optional[str] = None, port: Optional[int] = None,
                 rasa_url: Optional[str] = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DESK_PORT": str(self.port), "DESK_API_TOKEN": TOKEN,
               "DESK_SECRET_KEY": "live-bus-secret-key-0123456789abcdef", "DESK_DATABASE_URL": database,
               "RASA_URL": rasa_url or f"http://127.0.0.1:{free_port()}"}
        if redis_url:
            env["DESK_REDIS_URL"] = redis_url
        self.process = subprocess.Popen([sys.executable, "-m", "support_desk"], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: List[str] = []
        # Read its log all along: a full pipe would stall it; the first run prints the password.
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()
        wait_for(f"{self.url}/health", self.process, "support desk")

    @property
    def password(self) -> Optional[str]:
        """The first agent's password, printed once by the desk that created it."""
        for _ in range(100):  # the log is read by a thread: give it a moment
            found = [line for line in self.lines if "password (shown once):" in line]
            if found:
                return found[0].rsplit(":", 1)[1].strip()
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def desks(tmp_path_factory):
    directory = tmp_path_factory.mktemp("live-bus")
    redis, redis_url = redis_server(directory)
    database = f"sqlite:///{directory / 'desk.db'}"
    first = Desk(database, redis_url)  # migrates the database and creates the admin account
    second = Desk(database, redis_url)
    yield first, second, first.password
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

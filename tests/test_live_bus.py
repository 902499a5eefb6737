"""Two real desk processes on one database and a real Redis: a change made through desk A
reaches a console stream open on desk B."""

from __future__ import annotations

import asyncio
import json
import shutil

import aiohttp
import pytest

from bench.servers import redis_server
from tests.harness.desk import DESK_TOKEN as TOKEN, DeskProcess
from tests.harness.desk_app import csrf_of

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not shutil.which("redis-server"), reason="scripts/system_packages.sh installs redis-server"),
]


@pytest.fixture(scope="module")
def desks(tmp_path_factory):
    directory = tmp_path_factory.mktemp("live-bus")
    redis, redis_url = redis_server(directory)
    database = f"sqlite:///{directory / 'desk.db'}"
    first = DeskProcess(directory, database, redis_url=redis_url)  # migrates and creates the admin account
    second = DeskProcess(directory, database, redis_url=redis_url)
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
        await agent.post(f"{b.url}/console/login", data={"csrf": csrf_of(form), "username": "admin", "password": password})
        async with agent.get(f"{b.url}/console/events") as stream:
            assert stream.status == 200
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                created = await (await api.post(f"{a.url}/api/escalations", json={"sender_id": "m-bus", "ticket": "PX-BBBBBB"})).json()
                assert await next_event(stream) == {"type": "case", "id": created["id"], "change": "created"}
                await api.post(f"{a.url}/api/escalations/{created['id']}/claim", json={"agent": "wang"})
                assert await next_event(stream) == {"type": "case", "id": created["id"], "change": "updated"}

"""The widget's delivery marks: one per session, only ever moving forward, kept across
restarts (SQLite file) and shared by Rasa processes (Redis, Debian's redis-server)."""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Iterator

import pytest

from bench.servers import redis_server
from channels.widget_store import KEEP_SECONDS, RedisDeliveryStore, SQLiteDeliveryStore, delivery_store


NOW = float(int(time.time()))


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    if not shutil.which("redis-server"):
        pytest.skip("scripts/system_packages.sh installs redis-server")
    service, url = redis_server(tmp_path_factory.mktemp("redis"))
    yield url
    service.stop()


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    if request.param == "sqlite":
        return lambda: SQLiteDeliveryStore(tmp_path / "var" / "widget_delivery.sqlite")
    url = request.getfixturevalue("redis_url")
    return lambda: RedisDeliveryStore(url)


async def test_a_mark_only_moves_forward(make_store):
    store = make_store()
    assert await store.delivered("s-1") is None
    await store.advance("s-1", NOW + 0.25)
    await store.advance("s-1", NOW - 1.0)  # an older confirmation arriving late
    assert await store.delivered("s-1") == NOW + 0.25
    await store.advance("s-1", NOW + 7.123456)
    assert await store.delivered("s-1") == NOW + 7.123456
    assert await store.delivered("s-2") is None


async def test_marks_survive_a_new_store_on_the_same_file_or_server(make_store):
    await make_store().advance("kept", NOW + 0.5)
    assert await make_store().delivered("kept") == NOW + 0.5


async def test_concurrent_confirmations_keep_the_latest(make_store):
    stores = [make_store(), make_store()]  # two Rasa processes
    marks = [NOW + n / 7 for n in range(60)]
    await asyncio.gather(*(stores[n % 2].advance("busy", mark) for n, mark in enumerate(reversed(marks))))
    assert await stores[0].delivered("busy") == max(marks)


async def test_a_mark_older_than_the_keeping_time_is_forgotten(tmp_path):
    path = tmp_path / "d.sqlite"
    await SQLiteDeliveryStore(path).advance("old", NOW - KEEP_SECONDS - 60)
    await SQLiteDeliveryStore(path).advance("recent", NOW - 60)
    reopened = SQLiteDeliveryStore(path)
    assert await reopened.delivered("old") is None
    assert await reopened.delivered("recent") == NOW - 60


def test_redis_when_the_channel_has_a_redis_url(tmp_path):
    assert isinstance(delivery_store(None, tmp_path / "d.sqlite"), SQLiteDeliveryStore)
    assert isinstance(delivery_store("redis://127.0.0.1:1", tmp_path / "d.sqlite"), RedisDeliveryStore)

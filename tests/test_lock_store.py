"""The atomic Redis lock store keeps Rasa's ticket-lock behaviour, on a real redis-server.

Same tickets and stored locks as Rasa's own lock store for any sequence of issuing,
handing back, pruning and time passing; readable and continuable by a stock
``RedisLockStore``; one conversation served by one holder at a time, first come first
served, across two store instances (two processes); two round trips per message.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import types
import uuid
from typing import Dict, List

import pytest
import rasa.core.lock
from hypothesis import given, settings
from hypothesis import strategies as st
from rasa.core.lock_store import InMemoryLockStore, LockError, LockStore, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

from bench.servers import free_port, redis_server
from rasa_server.lock_store import AtomicRedisLockStore

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="scripts/system_packages.sh installs redis-server")


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    service, url = redis_server(tmp_path_factory.mktemp("redis"))
    yield int(url.rsplit(":", 1)[1])
    service.stop()


class Clock:
    """A settable clock for both stores (ticket expiry is the client's time)."""

    def __init__(self) -> None:
        self.now = 1_795_600_000.25

    def __call__(self) -> float:
        return self.now


def stored(store: LockStore, conversation_id: str):
    """The lock as stored, as (number, expires) pairs; None when there is none."""
    lock = store.get_lock(conversation_id)
    return None if lock is None else [(t.number, round(t.expires, 3)) for t in lock.tickets]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.sampled_from("ab"), st.integers(1, 5)),
        st.tuples(st.just("hand back"), st.sampled_from("ab"), st.integers(0, 6)),
        st.tuples(st.just("prune"), st.sampled_from("ab"), st.just(0)),
        st.tuples(st.just("wait"), st.just(""), st.integers(1, 4)),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_same_tickets_and_locks_as_rasas_lock_store(redis_port, steps):
    clock = Clock()
    with pytest.MonkeyPatch.context() as patch:
        # Rasa's TicketLock reads time.time(): both stores run on the same settable clock.
        patch.setattr(rasa.core.lock, "time", types.SimpleNamespace(time=clock))
        play(steps, clock, redis_port)


def play(steps, clock: Clock, redis_port: int) -> None:
    """Apply the steps to both stores; after each, both store the same locks."""
    # A fresh prefix per example: a free port number can repeat, and a lock left by an
    # earlier example under the same prefix would be read as this one's (Rasa takes
    # alphanumeric prefixes only).
    prefix = f"p{uuid.uuid4().hex}"
    ours = AtomicRedisLockStore(host="127.0.0.1", port=redis_port, key_prefix=prefix, clock=clock)
    assert ours.key_prefix.startswith(prefix)  # not upstream's shared fallback prefix
    reference = InMemoryLockStore()
    for operation, conversation, value in steps:
        if operation == "issue":
            assert ours.issue_ticket(conversation, value) == reference.issue_ticket(conversation, value)
        elif operation == "hand back":
            ours.cleanup(conversation, value)
            reference.cleanup(conversation, value)
        elif operation == "prune":
            ours.update_lock(conversation)
            reference.update_lock(conversation)
        else:
            clock.now += value
        for name in "ab":
            assert stored(ours, name) == stored(reference, name), (operation, name)


def test_a_stock_redis_lock_store_reads_and_continues_the_locks(redis_port):
    ours = AtomicRedisLockStore(host="127.0.0.1", port=redis_port, key_prefix="mixed")
    stock = RedisLockStore(host="127.0.0.1", port=redis_port, key_prefix="mixed")
    assert ours.issue_ticket("c", 60) == 0
    assert stock.issue_ticket("c", 60) == 1
    assert ours.issue_ticket("c", 60) == 2
    assert [t.number for t in stock.get_lock("c").tickets] == [0, 1, 2]
    stored_json = json.loads(ours.red.get(ours.key_prefix + "c"))
    assert stored_json["conversation_id"] == "c" and len(stored_json["tickets"]) == 3
    stock.cleanup("c", 0)
    ours.cleanup("c", 1)
    assert [t.number for t in stock.get_lock("c").tickets] == [2]
    ours.cleanup("c", 2)
    assert stock.get_lock("c") is None


async def test_one_holder_at_a_time_first_come_first_served_across_processes(redis_port):
    stores = [AtomicRedisLockStore(host="127.0.0.1", port=redis_port, key_prefix="fifo") for _ in range(2)]
    inside: List[str] = []
    entered: List[int] = []
    tickets: Dict[int, int] = {}

    async def message(index: int) -> None:
        store = stores[index % 2]
        async with store.lock("shared", lock_lifetime=30, wait_time_in_seconds=0.01) as lock:
            tickets[index] = lock.now_serving
            inside.append(f"in {index}")
            entered.append(index)
            await asyncio.sleep(0.005)
            inside.append(f"out {index}")

    tasks = []
    for index in range(12):
        tasks.append(asyncio.ensure_future(message(index)))
        await asyncio.sleep(0)  # each message takes its ticket before the next arrives
    await asyncio.gather(*tasks)
    # Never two holders: every "in" is followed by its own "out".
    assert inside == [f"{side} {i}" for i in entered for side in ("in", "out")]
    assert entered == list(range(12))
    assert [tickets[i] for i in entered] == list(range(12))
    assert stores[0].get_lock("shared") is None


async def test_an_uncontended_message_costs_two_round_trips(redis_port, monkeypatch):
    store = AtomicRedisLockStore(host="127.0.0.1", port=redis_port, key_prefix="trips")
    async with store.lock("warm"):  # loads the scripts
        pass
    sent: List[str] = []
    execute = store.red.execute_command
    monkeypatch.setattr(store.red, "execute_command", lambda *args, **options: sent.append(args[0]) or execute(*args, **options))
    async with store.lock("counted") as lock:
        assert lock.now_serving == 0
    assert sent == ["EVALSHA", "EVALSHA"]
    assert store.get_lock("counted") is None


async def test_a_holder_that_never_returns_its_ticket_expires(redis_port):
    store = AtomicRedisLockStore(host="127.0.0.1", port=redis_port, key_prefix="crash")
    store.issue_ticket("stuck", 0.2)  # its process died holding the ticket
    async with store.lock("stuck", lock_lifetime=30, wait_time_in_seconds=0.05) as lock:
        assert [t.number for t in lock.tickets] == [1]
    assert store.get_lock("stuck") is None


def test_created_from_endpoints_like_rasas_redis_lock_store(redis_port):
    config = EndpointConfig(url="127.0.0.1", type="rasa_server.lock_store.AtomicRedisLockStore", port=redis_port, key_prefix="pos1000")
    store = LockStore.create(config)
    assert isinstance(store, AtomicRedisLockStore)
    assert store.key_prefix == "pos1000:lock:"
    assert store.issue_ticket("endpoint") == 0


def test_redis_unreachable_is_a_lock_error():
    store = AtomicRedisLockStore(host="127.0.0.1", port=free_port(), socket_timeout=1)
    with pytest.raises(LockError, match="Error while acquiring lock"):
        store.issue_ticket("nobody")

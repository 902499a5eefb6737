"""The desk files what Rasa's event broker pushes: POST /api/rasa/events."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from support_desk.api import STORE
from support_desk.app import create_app
from tests.harness.desk_app import AUTH, desk_settings

URL = "/api/rasa/events"


@pytest.fixture
async def client(tmp_path, rasa):
    app = create_app(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}", rasa.url))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def handoff(client, sender: str = "m-1") -> dict:
    response = await client.post(
        "/api/escalations",
        headers=AUTH,
        json={
            "sender_id": sender,
            "ticket": "PX-7K2Q9M",
            "language": "zh",
            "transcript": [{"role": "user", "text": "转人工", "source_ts": 1.0}],
        },
    )
    assert response.status == 201
    return await response.json()


def event(kind: str, text: str, ts: float, sender: str = "m-1", **extra) -> dict:
    return {"sender_id": sender, "event": kind, "text": text, "timestamp": ts, **extra}


async def push(client, events) -> dict:
    response = await client.post(URL, headers=AUTH, json={"events": events})
    assert response.status == 200, await response.text()
    return await response.json()


async def stored(client, case_id: int):
    # The store, not the API: the API's case read would also re-read the tracker.
    return [(m["role"], m["text"]) for m in (await client.app[STORE].get_escalation(case_id))["transcript"]]


async def test_what_is_said_during_the_handoff_reaches_the_case_once(client):
    case = await handoff(client)
    now = time.time()
    async with client.app[STORE].hub.subscribe() as queue:
        answer = await push(
            client,
            [
                event("user", "早些时候说的", now - 3600),  # before the case: in its transcript already
                event("bot", "您的工单号是 PX-7K2Q9M，人工客服会在 12-02 09:30 前在这里回复您。", now + 1),
                {"sender_id": "m-1", "event": "slot", "name": "ticket", "value": "PX-7K2Q9M", "timestamp": now + 1},
                {"sender_id": "m-1", "event": "pause", "timestamp": now + 1},
                event("user", "卡号 4111 1111 1111 1111 刷不了", now + 2),
                event("user", "/inform_not_fixed", now + 3),
                event("bot", "您好，我是客服", now + 4, metadata={"desk_message_id": 3}),
                event("user", "别的会话", now + 5, sender="someone-else"),
            ],
        )
        assert answer == {"received": 8, "ignored": 0, "filed": 3}
        assert (await push(client, [event("user", "卡号 4111 1111 1111 1111 刷不了", now + 2)]))["filed"] == 0
        assert queue.get_nowait() == {"type": "case", "id": case["id"], "change": "message"}
    assert await stored(client, case["id"]) == [
        ("user", "转人工"),
        ("bot", "您的工单号是 PX-7K2Q9M，人工客服会在 12-02 09:30 前在这里回复您。"),
        ("user", "卡号 411111******1111 刷不了"),
        ("user", "[inform not fixed]"),
    ]


async def test_after_the_resolve_the_conversation_is_the_bots_again(client):
    case = await handoff(client)
    response = await client.post(f"/api/escalations/{case['id']}/resolve", headers=AUTH, json={"note": "ok"})
    assert response.status in (200, 202)
    await push(client, [event("user", "谢谢", time.time() + 5)])
    assert ("user", "谢谢") not in await stored(client, case["id"])


@pytest.mark.parametrize(
    "body, message",
    [
        ([], "request body must be a JSON object"),
        ({}, "events must be a list of at most 1000 event objects"),
        ({"events": "x"}, "events must be a list of at most 1000 event objects"),
        ({"events": [{}] * 1001}, "events must be a list of at most 1000 event objects"),
    ],
)
async def test_bad_batches_get_a_json_error(client, body, message):
    response = await client.post(URL, headers=AUTH, json=body)
    assert response.status == 400 and await response.json() == {"error": message}


async def test_entries_that_are_not_events_are_counted_and_left(client):
    await handoff(client)
    now = time.time()
    answer = await push(
        client,
        [
            "x",
            {"event": "user"},
            event("user", "", now),
            event("user", "ok", float("inf")),
            event("user", 5, now),
            event("user", "好", now + 1, sender=""),
            event("chat", "x", now),
        ],
    )
    assert answer == {"received": 7, "ignored": 7, "filed": 0}


async def test_the_bearer_token_is_required(client):
    response = await client.post(URL, json={"events": []})
    assert response.status == 401 and "error" in await response.json()

"""The desk API with aiohttp's test client: every endpoint, every error, auth."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp.test_utils import TestClient, TestServer

from support_desk.app import create_app
from tests.harness.desk_app import AUTH, desk_settings

CASE = {
    "ticket": "PX-ABC234",
    "sender_id": "shop-17",
    "channel": "rest",
    "language": "zh",
    "merchant_id": "898310048160123",
    "terminal_serial": "0820ABC12345",
    "error_code": "1000",
    "contact": "13812345678",
    "summary": "报1000，卡号 4111 1111 1111 1111 刷不了",
    "diagnostics": [{"step": "network", "outcome": "not_fixed"}, {"step": "restart", "outcome": "not_fixed"}],
    "transcript": [
        {"role": "user", "text": "pos机报1000咋整", "at": "2026-11-25T02:00:00Z", "source_ts": 1.0},
        {"role": "bot", "text": "出现1000，按这四步排查", "at": "2026-11-25T02:00:01Z"},
    ],
}


@pytest.fixture
async def client(tmp_path, rasa):
    app = create_app(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}", rasa.url))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def create(client, **changes):
    response = await client.post("/api/escalations", json={**CASE, **changes}, headers=AUTH)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_health_is_public(client):
    response = await client.get("/health")
    assert response.status == 200 and await response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/escalations"),
        ("POST", "/api/escalations"),
        ("GET", "/api/escalations/1"),
        ("POST", "/api/escalations/1/claim"),
        ("POST", "/api/escalations/1/reply"),
        ("POST", "/api/escalations/1/resolve"),
        ("GET", "/api/incidents"),
        ("POST", "/api/incidents"),
        ("POST", "/api/incidents/1/close"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}, {"Authorization": "Bearer"}],
)
async def test_every_api_endpoint_refuses_without_the_token(client, method, path, headers):
    response = await client.request(method, path, json={}, headers=headers)
    assert response.status == 401
    assert await response.json() == {"error": "missing or wrong bearer token"}


async def test_create_escalation_masks_cards_and_keeps_transcript(client):
    escalation = await create(client)
    assert escalation["ticket"] == "PX-ABC234" and escalation["status"] == "open"
    assert escalation["summary"] == "报1000，卡号 411111******1111 刷不了"
    assert escalation["diagnostics"] == CASE["diagnostics"]
    assert [(m["role"], m["text"]) for m in escalation["transcript"]] == [
        ("user", "pos机报1000咋整"),
        ("bot", "出现1000，按这四步排查"),
    ]
    reply_by = datetime.fromisoformat(escalation["expected_reply_by"])
    assert reply_by > datetime.now(timezone.utc)
    for key in (
        "id",
        "sender_id",
        "channel",
        "language",
        "priority",
        "merchant_id",
        "terminal_serial",
        "error_code",
        "contact",
        "created_at",
        "updated_at",
    ):
        assert key in escalation


async def test_same_ticket_twice_creates_one_escalation(client):
    first = await create(client)
    again = await client.post("/api/escalations", json=CASE, headers=AUTH)
    assert again.status == 200 and (await again.json())["id"] == first["id"]
    listing = await (await client.get("/api/escalations", headers=AUTH)).json()
    assert len(listing["escalations"]) == 1


async def test_ticket_is_generated_when_missing(client):
    escalation = await create(client, ticket=None)
    assert escalation["ticket"].startswith("PX-") and len(escalation["ticket"]) == 9


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "request body is empty: send a JSON object"),
        (b"{not json", "request body is not valid JSON: Expecting property name enclosed in double quotes"),
        (b"\xff\xfe\x00", "request body is not UTF-8"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'{"channel": "rest"}', "sender_id is required and must be a string"),
        (b'{"sender_id": "   "}', "sender_id must not be empty"),
        (b'{"sender_id": 5}', "sender_id is required and must be a string"),
        (b'{"sender_id": "a", "language": "fr"}', "language must be one of zh, en"),
        (b'{"sender_id": "a", "priority": "asap"}', "priority must be one of urgent, high, normal"),
        (b'{"sender_id": "a", "diagnostics": "all"}', "diagnostics must be a list of at most 20 {step, outcome} objects"),
        (b'{"sender_id": "a", "diagnostics": [1]}', "every diagnostics entry must be an object"),
        (b'{"sender_id": "a", "transcript": [{"role": "admin", "text": "x"}]}', "transcript role must be one of user, bot, agent"),
        (
            b'{"sender_id": "a", "transcript": [{"role": "user", "text": "x", "at": "yesterday"}]}',
            "at is not an ISO 8601 time: 'yesterday'",
        ),
        (b'{"sender_id": "' + b"x" * 300 + b'"}', "sender_id is longer than 255 characters"),
    ],
)
async def test_bad_escalation_bodies_get_clear_400s(client, body, message):
    response = await client.post("/api/escalations", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 400
    assert await response.json() == {"error": message}


async def test_oversized_body_is_refused(client):
    response = await client.post(
        "/api/escalations",
        data=b'{"sender_id": "a", "summary": "' + b"x" * 300_000 + b'"}',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status == 413
    assert await response.json() == {"error": "request body too large"}


async def test_list_filters(client):
    first = await create(client)
    await create(client, ticket="PX-DEF567", sender_id="shop-18")
    await client.post(f"/api/escalations/{first['id']}/claim", json={"agent": "li"}, headers=AUTH)

    async def tickets(query):
        response = await client.get(f"/api/escalations{query}", headers=AUTH)
        assert response.status == 200
        return [e["ticket"] for e in (await response.json())["escalations"]]

    assert await tickets("") == ["PX-DEF567", "PX-ABC234"]
    assert await tickets("?status=claimed") == ["PX-ABC234"]
    assert await tickets("?status=open") == ["PX-DEF567"]
    assert await tickets("?status=resolved") == []
    assert await tickets("?ticket=PX-DEF567") == ["PX-DEF567"]
    assert await tickets("?sender_id=shop-17") == ["PX-ABC234"]
    bad = await client.get("/api/escalations?status=closed", headers=AUTH)
    assert bad.status == 400 and await bad.json() == {"error": "status must be one of open, claimed, resolved"}


async def test_list_pages_with_a_cursor(client):
    for number in range(5):
        await create(client, ticket=f"PX-PAGE{number:02d}", sender_id=f"shop-{number}")
    response = await client.get("/api/escalations?limit=2", headers=AUTH)
    body = await response.json()
    assert [e["ticket"] for e in body["escalations"]] == ["PX-PAGE04", "PX-PAGE03"] and body["next_cursor"]
    await create(client, ticket="PX-LATE00", sender_id="shop-late")  # between two pages
    seen = [e["ticket"] for e in body["escalations"]]
    while body["next_cursor"]:
        response = await client.get("/api/escalations", params={"limit": "2", "cursor": body["next_cursor"]}, headers=AUTH)
        assert response.status == 200
        body = await response.json()
        seen += [e["ticket"] for e in body["escalations"]]
    assert seen == [f"PX-PAGE{n:02d}" for n in range(4, -1, -1)]
    unpaged = await (await client.get("/api/escalations", headers=AUTH)).json()
    assert len(unpaged["escalations"]) == 6 and unpaged["next_cursor"] is None  # an old caller's first page
    for query, message in [
        ("limit=0", "limit must be an integer from 1 to 200"),
        ("limit=201", "limit must be an integer from 1 to 200"),
        ("limit=abc", "limit must be an integer from 1 to 200"),
        ("cursor=", "cursor is not one this desk gave out"),
        ("cursor=%E2%9C%93", "cursor is not one this desk gave out"),
        ("cursor=eyJpZCI6MX0", "cursor is not one this desk gave out"),
    ]:
        bad = await client.get(f"/api/escalations?{query}", headers=AUTH)
        assert bad.status == 400 and await bad.json() == {"error": message}, query


async def test_unknown_escalation_is_404(client):
    for path in ("/api/escalations/999", "/api/escalations/abc"):
        response = await client.get(path, headers=AUTH)
        assert response.status == 404 and await response.json() == {"error": "not found"}
    response = await client.post("/api/escalations/999/reply", json={"text": "hi"}, headers=AUTH)
    assert response.status == 404


async def test_claim_rules(client, rasa):
    case = await create(client)
    path = f"/api/escalations/{case['id']}/claim"
    assert (await client.post(path, json={}, headers=AUTH)).status == 400
    ok = await client.post(path, json={"agent": "li"}, headers=AUTH)
    assert ok.status == 200 and (await ok.json())["claimed_by"] == "li"
    again = await client.post(path, json={"agent": "li"}, headers=AUTH)
    assert again.status == 200
    taken = await client.post(path, json={"agent": "wang"}, headers=AUTH)
    assert taken.status == 409 and await taken.json() == {"error": "escalation is claimed by li"}
    # The merchant is told once that a person has joined.
    assert rasa.events["shop-17"] == [
        {"event": "bot", "text": "人工客服 li 已加入对话。", "metadata": {"agent": None, "desk_message_id": 3}}
    ]


async def test_reply_reaches_rasa_as_a_bot_message(client, rasa):
    case = await create(client)
    response = await client.post(f"/api/escalations/{case['id']}/reply", json={"text": "您好，我是客服小李", "agent": "li"}, headers=AUTH)
    assert response.status == 201
    message = await response.json()
    assert (message["role"], message["kind"], message["delivered"]) == ("agent", "reply", True)
    assert rasa.events["shop-17"] == [{"event": "bot", "text": "您好，我是客服小李", "metadata": {"agent": "li", "desk_message_id": 3}}]
    request = rasa.requests[-1]
    assert request.query["output_channel"] == "latest" and request.query["execute_side_effects"] == "true"
    escalation = await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json()
    assert escalation["status"] == "claimed" and escalation["first_reply_at"]
    assert escalation["transcript"][-1]["text"] == "您好，我是客服小李"


async def test_reply_is_kept_when_rasa_is_down_and_sent_later(client, rasa):
    case = await create(client)
    rasa.down = True
    response = await client.post(f"/api/escalations/{case['id']}/reply", json={"text": "第一条"}, headers=AUTH)
    assert response.status == 202
    body = await response.json()
    assert body["delivered"] is False and body["delivery_error"] == "Rasa answered 503"
    second = await client.post(f"/api/escalations/{case['id']}/reply", json={"text": "第二条"}, headers=AUTH)
    assert second.status == 202 and (await second.json())["delivery_error"] == "waiting for an earlier message"
    assert "shop-17" not in rasa.events

    rasa.down = False
    third = await client.post(f"/api/escalations/{case['id']}/reply", json={"text": "第三条"}, headers=AUTH)
    assert third.status == 201
    assert [e["text"] for e in rasa.events["shop-17"]] == ["第一条", "第二条", "第三条"]


async def test_bad_reply_bodies(client):
    case = await create(client)
    path = f"/api/escalations/{case['id']}/reply"
    for body, message in (
        ({}, "text is required and must be a string"),
        ({"text": " \n\t "}, "text must not be empty"),
        ({"text": "\x00\x01"}, "text must not be empty"),
        ({"text": "x" * 4001}, "text is longer than 4000 characters"),
    ):
        response = await client.post(path, json=body, headers=AUTH)
        assert response.status == 400 and await response.json() == {"error": message}


async def test_resolve_resumes_the_bot_in_the_merchants_language(client, rasa):
    case = await create(client, language="en")
    response = await client.post(
        f"/api/escalations/{case['id']}/resolve", json={"note": "gateway reset", "category": "server"}, headers=AUTH
    )
    assert response.status == 200
    resolved = await response.json()
    assert resolved["status"] == "resolved" and resolved["bot_resumed"] is True
    assert resolved["resolution_note"] == "gateway reset" and resolved["resolution_category"] == "server"
    assert rasa.events["shop-17"] == [
        {"event": "resume"},
        {
            "event": "bot",
            "text": "Support has finished with your case PX-ABC234 and I'm back. Ask me anything else any time.",
            "metadata": {"desk_message_id": 3},
        },
        {
            "event": "bot",
            "text": "How happy are you with the help from our support agent? Tap 1–5 stars (5 is best); feel free to skip this.",
            "data": {"buttons": [{"title": f"{n} ⭐", "payload": f'/rate_agent{{"agent_rating": "{n}"}}'} for n in (5, 4, 3, 2, 1)]},
            "metadata": {"desk_message_id": 4},
        },
        {"event": "action", "name": "action_listen"},
    ]
    again = await client.post(f"/api/escalations/{case['id']}/resolve", json={"note": "x"}, headers=AUTH)
    assert again.status == 409
    late = await client.post(f"/api/escalations/{case['id']}/reply", json={"text": "x"}, headers=AUTH)
    assert late.status == 409 and await late.json() == {"error": "escalation is resolved"}


async def test_resolve_needs_a_note(client):
    case = await create(client)
    response = await client.post(f"/api/escalations/{case['id']}/resolve", json={"category": "x"}, headers=AUTH)
    assert response.status == 400 and await response.json() == {"error": "note is required and must be a string"}


async def test_merchant_messages_after_handoff_join_the_transcript_once(client, rasa):
    case = await create(client)
    later = time.time() + 5
    rasa.events["shop-17"] = [
        {"event": "user", "text": "pos机报1000咋整", "timestamp": 1.0},
        {"event": "user", "text": "还在吗？卡号4111111111111111", "timestamp": later},
        {"event": "bot", "text": "ignored", "timestamp": later + 1},
    ]
    for _ in range(2):
        escalation = await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json()
    merchant = [m for m in escalation["transcript"] if m["kind"] == "merchant"]
    assert [m["text"] for m in merchant] == ["还在吗？卡号411111******1111"]


async def test_incident_board(client):
    now = datetime.now(timezone.utc)
    body = {
        "region": "上海",
        "message": {"zh": "支付网关维护", "en": "Payment gateway maintenance"},
        "starts_at": (now - timedelta(minutes=5)).isoformat(),
        "expected_end": (now + timedelta(hours=2)).isoformat(),
    }
    created = await client.post("/api/incidents", json=body, headers=AUTH)
    assert created.status == 201
    incident = await created.json()
    assert incident["status"] == "active" and incident["message"] == body["message"]
    future = {**body, "starts_at": (now + timedelta(days=1)).isoformat(), "expected_end": None}
    assert (await client.post("/api/incidents", json=future, headers=AUTH)).status == 201

    active = await (await client.get("/api/incidents", headers=AUTH)).json()
    assert [i["id"] for i in active["incidents"]] == [incident["id"]]
    everything = await (await client.get("/api/incidents?all=true", headers=AUTH)).json()
    assert len(everything["incidents"]) == 2

    closed = await client.post(f"/api/incidents/{incident['id']}/close", headers=AUTH)
    assert closed.status == 200 and (await closed.json())["status"] == "resolved"
    assert (await (await client.get("/api/incidents", headers=AUTH)).json())["incidents"] == []
    assert (await client.post("/api/incidents/999/close", headers=AUTH)).status == 404


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "message must be an object with zh and en texts"),
        ({"message": {"zh": "维护"}}, "en is required and must be a string"),
        ({"message": {"zh": "a", "en": "b"}, "starts_at": "soon"}, "starts_at is not an ISO 8601 time: 'soon'"),
        (
            {"message": {"zh": "a", "en": "b"}, "starts_at": "2026-11-25T10:00:00Z", "expected_end": "2026-11-25T09:00:00Z"},
            "expected_end must be after starts_at",
        ),
    ],
)
async def test_bad_incidents(client, body, message):
    response = await client.post("/api/incidents", json=body, headers=AUTH)
    assert response.status == 400 and await response.json() == {"error": message}


async def test_openapi_document_matches_the_routes(client):
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in ("get", "post")}
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.method in ("GET", "POST") and route.resource.canonical.startswith(("/api", "/health"))
    }
    assert documented == served

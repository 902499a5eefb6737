"""The agent's tools on a case: notes, canned replies, release / transfer / hand-back,
display names, delivery state, the resolved outcome and the merchant's satisfaction.

Store tests run on SQLite and a real PostgreSQL; API and console tests on SQLite with
the Rasa HTTP API double (tests/harness/desk_app.py).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from support_desk.accounts import create_agent
from support_desk.api import STORE
from support_desk.app import create_app
from support_desk.store import Conflict, NewEscalation, utcnow
from tests.harness.desk_app import AUTH, desk_settings

MARKUP = '<script>alert("x")</script><b>bold</b>'
RATING_PAYLOADS = [f'/rate_agent{{"agent_rating": "{n}"}}' for n in (5, 4, 3, 2, 1)]


# --- store ------------------------------------------------------------------------------


# ``store``: the desk store on SQLite and on PostgreSQL (tests/harness/fixtures.py).


def new_case(**changes) -> NewEscalation:
    return NewEscalation(**{"sender_id": "shop-17", "channel": "socketio", "language": "zh", "ticket": "PX-ABC234", **changes})


async def test_a_note_is_private_and_never_queued_for_the_merchant(store):
    case, _ = await store.create_escalation(new_case(), None)
    note = await store.add_note(case["id"], "商户语气很急，卡号4111111111111111", "li")
    assert (note["kind"], note["delivery"], note["text"]) == ("note", "private", "商户语气很急，卡号411111******1111")
    assert await store.undelivered() == []
    await store.add_agent_reply(case["id"], "您好", "li")
    assert [m["kind"] for m in await store.undelivered()] == ["reply"]


async def test_release_and_transfer_rules(store):
    await store.add_agent("li", "x")
    await store.add_agent("wang", "x", "客服小王")
    case, _ = await store.create_escalation(new_case(), None)
    with pytest.raises(Conflict, match="not claimed"):
        await store.release(case["id"], "li")
    await store.claim(case["id"], "li")
    with pytest.raises(Conflict, match="claimed by li"):
        await store.release(case["id"], "wang")
    with pytest.raises(Conflict, match="no agent 'zhao'"):
        await store.transfer(case["id"], "li", "zhao")
    moved = await store.transfer(case["id"], "li", "wang", "人工客服 客服小王 已加入对话。")
    assert moved["claimed_by"] == "wang" and moved["transcript"][-1]["kind"] == "notice"
    released = await store.release(case["id"], "wang")
    assert (released["status"], released["claimed_by"]) == ("open", None)
    assert await store.display_name("wang") == "客服小王" and await store.display_name("li") == "li"


async def test_satisfaction_once_per_case_resolved_by_an_agent(store):
    case, _ = await store.create_escalation(new_case(), None)
    with pytest.raises(Conflict, match="not resolved"):
        await store.rate(case["id"], 5)
    await store.resolve(case["id"], "ok", "network", "再见", resolved_by="li")
    rated = await store.rate(case["id"], 4)
    assert (rated["satisfaction"], rated["resolved_by"]) == (4, "li")
    with pytest.raises(Conflict, match="already rated"):
        await store.rate(case["id"], 5)
    stats = await store.stats()
    assert (stats["agent_rating_average"], stats["agent_ratings"]) == (4.0, 1)

    other, _ = await store.create_escalation(new_case(ticket="PX-DEF567"), None)
    await store.resolve(other["id"], "", "returned_to_bot", "交还", resolved_by="li", kind="handback")
    with pytest.raises(Conflict, match="not resolved by an agent"):
        await store.rate(other["id"], 5)


async def test_waiting_on_an_agent(store):
    case, _ = await store.create_escalation(new_case(), None)
    await store.claim(case["id"], "li")
    assert await store.waiting_on("li", 0) == []  # nobody wrote since the claim
    await store.add_merchant_messages(case["id"], [{"text": "还在吗", "source_ts": 9.0, "at": utcnow()}])
    # Written just now: waiting past 0 minutes, not yet past 60.
    assert [w["ticket"] for w in await store.waiting_on("li", 0)] == ["PX-ABC234"]
    assert await store.waiting_on("li", 60) == []
    assert await store.waiting_on("wang", 0) == []
    await store.add_agent_reply(case["id"], "在的", "li")
    assert await store.waiting_on("li", 0) == []


async def test_canned_replies_of_agents(store):
    first = await store.add_canned("zh", "问候", "您好，我是客服", "li")
    await store.add_canned("en", "Hello", "Hello, this is support", "li")
    assert [r["title"] for r in await store.list_canned("zh")] == ["问候"]
    assert len(await store.list_canned()) == 2
    await store.delete_canned(first["id"])
    assert [r["title"] for r in await store.list_canned()] == ["Hello"]


# --- API ---------------------------------------------------------------------------------


@pytest.fixture
async def client(tmp_path, rasa):
    app = create_app(replace(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}", rasa.url), idle_reminder_minutes=0))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        test_client.password = await create_agent(app[STORE], "li", "客服小李")
        await create_agent(app[STORE], "wang", "客服小王")
        yield test_client


async def create(client, **changes):
    body = {
        "sender_id": "shop-17",
        "ticket": "PX-ABC234",
        "language": "zh",
        "channel": "socketio",
        "summary": "PAX A920 报1000",
        "transcript": [{"role": "user", "text": "报1000"}],
        **changes,
    }
    response = await client.post("/api/escalations", json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    return await response.json()


async def post(client, path, body):
    response = await client.post(path, json=body, headers=AUTH)
    return response.status, await response.json()


async def test_api_note_never_reaches_rasa(client, rasa):
    case = await create(client)
    status, note = await post(client, f"/api/escalations/{case['id']}/notes", {"text": MARKUP, "agent": "li"})
    assert status == 201 and (note["kind"], note["delivery"], note["text"]) == ("note", "private", MARKUP)
    await post(client, f"/api/escalations/{case['id']}/reply", {"text": "您好", "agent": "li"})
    await client.post("/api/escalations/1/resolve", json={"note": "ok"}, headers=AUTH)
    sent = rasa.events["shop-17"]
    assert MARKUP not in str(sent) and [e["text"] for e in sent if e["event"] == "bot"][0] == "您好"
    full = await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json()
    assert [m["delivery"] for m in full["transcript"] if m["kind"] == "note"] == ["private"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "text is required and must be a string"),
        ({"text": "\x00\x07\x1b"}, "text must not be empty"),
        ({"text": "x" * 100_000}, "text is longer than 4000 characters"),
        ({"text": ["a"]}, "text is required and must be a string"),
    ],
)
async def test_api_bad_notes(client, body, message):
    case = await create(client)
    assert await post(client, f"/api/escalations/{case['id']}/notes", body) == (400, {"error": message})


async def test_api_control_characters_are_dropped_from_a_note(client):
    case = await create(client)
    _, note = await post(client, f"/api/escalations/{case['id']}/notes", {"text": "a\x00b\x1bc\nd"})
    assert note["text"] == "abc\nd"


async def test_api_claim_and_transfer_use_display_names(client, rasa):
    case = await create(client)
    path = f"/api/escalations/{case['id']}"
    await post(client, f"{path}/claim", {"agent": "li"})
    assert await post(client, f"{path}/transfer", {"to": "zhao", "agent": "li"}) == (409, {"error": "no agent 'zhao'"})
    assert (await post(client, f"{path}/transfer", {"to": "wang", "agent": "zhao"}))[0] == 409
    status, moved = await post(client, f"{path}/transfer", {"to": "wang", "agent": "li"})
    assert status == 200 and moved["claimed_by"] == "wang"
    assert [e["text"] for e in rasa.events["shop-17"]] == ["人工客服 客服小李 已加入对话。", "人工客服 客服小王 已加入对话。"]
    assert (await post(client, f"{path}/transfer", {}))[0] == 400
    status, released = await post(client, f"{path}/release", {"agent": "wang"})
    assert status == 200 and released["status"] == "open"
    assert (await post(client, f"{path}/release", {}))[0] == 409


async def test_api_hand_back_resumes_the_bot_without_a_rating(client, rasa):
    case = await create(client, language="en")
    status, done = await post(client, f"/api/escalations/{case['id']}/handback", {"agent": "li"})
    assert status == 200 and (done["status"], done["resolution_category"], done["resolved_by"]) == ("resolved", "returned_to_bot", "li")
    events = rasa.events["shop-17"]
    assert [e["event"] for e in events] == ["resume", "bot", "action"]
    assert "PX-ABC234" in events[1]["text"] and events[1]["text"].startswith("Sorry for the wait")
    assert await post(client, f"/api/escalations/{case['id']}/satisfaction", {"rating": 5}) == (
        409,
        {"error": "escalation is not resolved by an agent"},
    )


async def test_api_resolve_asks_for_a_rating_and_takes_it_once(client, rasa):
    case = await create(client)
    path = f"/api/escalations/{case['id']}"
    assert await post(client, f"{path}/satisfaction", {"rating": 5}) == (409, {"error": "escalation is not resolved by an agent"})
    await post(client, f"{path}/claim", {"agent": "li"})
    status, resolved = await post(client, f"{path}/resolve", {"note": "网关已恢复"})
    assert status == 200 and resolved["resolved_by"] == "li"
    events = rasa.events["shop-17"][1:]  # after the join notice
    assert [e["event"] for e in events] == ["resume", "bot", "bot", "action"]
    assert "PX-ABC234" in events[1]["text"]
    assert "忽略" in events[2]["text"]  # says it can be skipped
    assert [b["payload"] for b in events[2]["data"]["buttons"]] == RATING_PAYLOADS
    for bad in ("5", 0, 6, 4.5, True, None):
        assert await post(client, f"{path}/satisfaction", {"rating": bad}) == (400, {"error": "rating must be an integer from 1 to 5"})
    status, rated = await post(client, f"{path}/satisfaction", {"rating": 5})
    assert status == 200 and rated["satisfaction"] == 5
    assert await post(client, f"{path}/satisfaction", {"rating": 1}) == (409, {"error": "escalation is already rated"})
    stats = await (await client.get("/api/stats", headers=AUTH)).json()
    assert (stats["agent_rating_average"], stats["agent_ratings"]) == (5.0, 1)


async def test_api_resolve_refuses_the_hand_back_category(client):
    case = await create(client)
    assert await post(client, f"/api/escalations/{case['id']}/resolve", {"note": "x", "category": "returned_to_bot"}) == (
        400,
        {"error": "category returned_to_bot is set by a hand-back, not by resolve"},
    )


@pytest.mark.parametrize("channel, state", [("socketio", "delivered"), ("wecom", "delivered"), ("rest", "not_pushable")])
async def test_api_delivery_state_follows_the_channel(client, channel, state):
    case = await create(client, channel=channel)
    status, message = await post(client, f"/api/escalations/{case['id']}/reply", {"text": "您好"})
    assert status == 201 and message["delivery"] == state


async def test_api_delivery_state_waiting_while_rasa_is_down(client, rasa):
    case = await create(client)
    rasa.down = True
    status, message = await post(client, f"/api/escalations/{case['id']}/reply", {"text": "您好"})
    assert status == 202 and (message["delivery"], message["delivery_error"]) == ("waiting", "Rasa answered 503")


async def test_two_agents_replying_at_once_are_delivered_once_in_order(client, rasa):
    case = await create(client)
    path = f"/api/escalations/{case['id']}/reply"
    texts = [f"第{n}条" for n in range(10)]
    results = await asyncio.gather(*(post(client, path, {"text": text, "agent": ("li", "wang")[n % 2]}) for n, text in enumerate(texts)))
    assert all(status == 201 for status, _ in results)
    sent = [e for e in rasa.events["shop-17"] if e["event"] == "bot"]
    assert sorted(e["text"] for e in sent) == sorted(texts)  # each once
    ids = [e["metadata"]["desk_message_id"] for e in sent]
    assert ids == sorted(ids)  # in the order the desk stored them


# --- console ------------------------------------------------------------------------------


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def login(client, username="li", password=None):
    form = await (await client.get("/console/login")).text()
    await client.post("/console/login", data={"csrf": csrf_of(form), "username": username, "password": password or client.password})
    return csrf_of(await (await client.get("/console")).text())


async def test_console_note_is_shown_distinctly_and_stays_private(client, rasa):
    token = await login(client)
    case = await create(client)
    page = await (await client.post(f"/console/cases/{case['id']}/notes", data={"csrf": token, "text": MARKUP})).text()
    assert "备注已保存" in page and 'class="msg msg-note"' in page and "内部备注 · 商户看不到" in page
    assert "&lt;script&gt;" in page and MARKUP not in page
    assert "shop-17" not in rasa.events
    feed = await (await client.get(f"/console/live/cases/{case['id']}")).json()
    assert feed["transcript"][-1]["delivery_text"] == "内部备注 · 商户看不到"


async def test_console_canned_replies_for_the_case(client):
    assert (await client.get("/console/cases/1/canned")).status == 401
    token = await login(client)
    case = await create(client)  # the summary names a PAX A920
    await client.post("/console/canned", data={"csrf": token, "title": MARKUP, "text": "您好\n稍等", "language": "zh"})
    await client.post("/console/canned", data={"csrf": token, "title": "Hello", "text": "Hi", "language": "en"})
    canned = (await (await client.get(f"/console/cases/{case['id']}/canned")).json())["canned"]
    titles = [c["title"] for c in canned]
    assert titles == ["重启步骤 · PAX A920", "更新软件 · PAX A920", "查看版本 · PAX A920", "检查网络", "冲正：顾客被扣款了吗", MARKUP]
    assert "3.2.1" in canned[2]["text"] and "交易查询" in canned[4]["text"]

    english = await create(client, ticket="PX-DEF567", language="en", summary="1000 again")
    canned = (await (await client.get(f"/console/cases/{english['id']}/canned")).json())["canned"]
    titles = [c["title"] for c in canned]
    # No model named: the generic steps and every model's, then the fixed ones and the agents'.
    assert titles[0] == "Restart steps · any model" and "Restart steps · Sunmi P2".replace("Sunmi", "商米") in titles
    assert titles[-3:] == ["Check the network", "Reversal: was the customer charged?", "Hello"]

    listing = await (await client.get("/console/canned")).text()
    assert "&lt;script&gt;" in listing and MARKUP not in listing
    bad = await (await client.post("/console/canned", data={"csrf": token, "title": "x", "text": "y", "language": "fr"})).text()
    assert "language must be zh or en" in bad
    first_id = re.search(r"/console/canned/(\d+)/delete", listing).group(1)
    await client.post(f"/console/canned/{first_id}/delete", data={"csrf": token})
    assert MARKUP not in str((await (await client.get(f"/console/cases/{case['id']}/canned")).json())["canned"])


async def test_console_release_transfer_and_reminder(client, rasa):
    token = await login(client)
    case = await create(client)
    url = f"/console/cases/{case['id']}"
    await client.post(f"{url}/claim", data={"csrf": token})
    rasa.events["shop-17"].append({"event": "user", "text": "还在吗", "timestamp": time.time()})
    page = await (await client.get(url)).text()  # copies the merchant's message in
    # idle_reminder_minutes is 0 here: the merchant's message waits on li at once.
    assert 'id="reminders"' in page and "PX-ABC234" in page.split('id="reminders"')[1][:300]
    page = await (await client.post(f"{url}/transfer", data={"csrf": token, "to": "nobody"})).text()
    assert "no agent &#39;nobody&#39;" in page
    page = await (await client.post(f"{url}/transfer", data={"csrf": token, "to": "wang"})).text()
    assert "已转给 wang" in page and 'id="reminders"' not in page
    assert rasa.events["shop-17"][-1]["text"] == "人工客服 客服小王 已加入对话。"
    page = await (await client.post(f"{url}/release", data={"csrf": token})).text()
    assert "claimed by wang" in page  # only the agent holding it releases it


async def test_console_logout_with_claimed_cases_asks_first(client):
    token = await login(client)
    case = await create(client)
    await client.post(f"/console/cases/{case['id']}/claim", data={"csrf": token})
    page = await (await client.post("/console/logout", data={"csrf": token})).text()
    assert "您还有接手中的工单" in page and "PX-ABC234" in page
    response = await client.post("/console/logout", data={"csrf": token, "then": "release"}, allow_redirects=False)
    assert response.headers["Location"] == "/console/login"
    assert (await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json())["status"] == "open"


async def test_console_display_name_and_rest_delivery_words(client, rasa):
    token = await login(client)
    page = await (await client.post("/console/profile", data={"csrf": token, "display_name": "小李<b>"})).text()
    assert "名字已保存" in page and 'value="小李&lt;b&gt;"' in page
    case = await create(client, channel="rest")
    url = f"/console/cases/{case['id']}"
    await client.post(f"{url}/claim", data={"csrf": token})
    assert rasa.events["shop-17"][0]["text"] == "人工客服 小李<b> 已加入对话。"
    page = await (await client.post(f"{url}/reply", data={"csrf": token, "text": "您好"})).text()
    assert "rest 渠道不会主动推送" in page and "已发送。" not in page
    assert "已存入对话，rest 渠道不主动推送" in page


async def test_console_resolved_outcome_and_satisfaction(client, rasa):
    token = await login(client)
    case = await create(client)
    url = f"/console/cases/{case['id']}"
    page = await (await client.post(f"{url}/resolve", data={"csrf": token, "note": "网关已恢复", "category": "server"})).text()
    outcome = page.split('id="outcome"')[1]
    assert "服务器状态" in outcome and "li (客服小李)" in outcome and "商户还没有评价" in outcome
    await client.post(f"/api/escalations/{case['id']}/satisfaction", json={"rating": 4}, headers=AUTH)
    assert "⭐⭐⭐⭐ 4/5" in await (await client.get(url)).text()
    stats = await (await client.get("/console/stats")).text()
    assert 'id="agent-rating">4.0 / 5 · 1 条评价' in stats and 'id="bot-rating">暂无' in stats
    # The bot's own rating after a fixed terminal, beside the agents'.
    await client.post("/api/outcomes", json={"sender_id": "shop-9", "outcome": "resolved", "fixed_step": "network"}, headers=AUTH)
    rated = await client.post("/api/outcomes/rating", json={"sender_id": "shop-9", "rating": 5}, headers=AUTH)
    assert rated.status == 201
    stats = await (await client.get("/console/stats")).text()
    assert 'id="agent-rating">4.0 / 5 · 1 条评价' in stats and 'id="bot-rating">5.0 / 5 · 1 条评价' in stats


async def test_closing_and_rating_wait_together_while_rasa_is_down(client, rasa):
    from support_desk.api import RELAY

    case = await create(client)
    rasa.down = True
    status, resolved = await post(client, f"/api/escalations/{case['id']}/resolve", {"note": "ok"})
    assert status == 202 and resolved["bot_resumed"] is False
    assert [m["delivery"] for m in resolved["transcript"] if m["kind"] in ("closing", "rating")] == ["waiting", "waiting"]
    rasa.down = False
    assert await client.app[RELAY].deliver_pending() == {}
    assert [e["event"] for e in rasa.events["shop-17"]] == ["resume", "bot", "bot", "action"]
    assert await client.app[RELAY].deliver_pending() == {}  # nothing goes twice
    assert len(rasa.events["shop-17"]) == 4

"""The agents' console with aiohttp's test client: login, CSRF, pages, escaping."""

from __future__ import annotations


import pytest

from tests.harness.desk_app import AUTH, SCRIPT, case, console_client, csrf_of, login


@pytest.fixture
async def client(tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/console", "/console/cases/1", "/console/incidents", "/console/stats"])
async def test_every_page_needs_a_login(client, path):
    response = await client.get(path, allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/console/login"


async def test_transcript_feed_needs_a_login(client):
    response = await client.get("/console/live/cases/1")
    assert response.status == 401 and await response.json() == {"error": "login required"}


async def test_login_sets_a_protected_session_cookie(client):
    response = await login(client)
    assert response.status == 302 and response.headers["Location"] == "/console"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert (await client.get("/console")).status == 200


async def test_wrong_password_and_throttling(client):
    for _ in range(5):
        response = await login(client, password="wrong")
        assert response.headers["Location"] == "/console/login"
    page = await (await client.get("/console/login")).text()
    assert "用户名或密码不对" in page
    blocked = await login(client)  # the right password, but too many failures
    assert blocked.headers["Location"] == "/console/login"
    assert "尝试次数过多" in await (await client.get("/console/login")).text()


async def test_forms_without_the_csrf_token_are_refused(client):
    assert (await client.post("/console/login", data={"username": "li", "password": client.password})).status == 403
    await login(client)
    created = await case(client)
    response = await client.post(f"/console/cases/{created['id']}/reply", data={"text": "hi", "csrf": "forged"})
    assert response.status == 403


async def test_queue_filters_and_sla_badge(client):
    await login(client)
    await case(client)
    await case(client, ticket="PX-DEF567", priority="urgent")
    page = await (await client.get("/console")).text()
    assert "PX-ABC234" in page and "PX-DEF567" in page and "sla-ok" in page
    assert "138****5678" in page and "13812345678" not in page
    urgent = await (await client.get("/console?priority=urgent")).text()
    assert "PX-DEF567" in urgent and "PX-ABC234" not in urgent
    old = await (await client.get("/console?older_than=60")).text()
    assert "PX-ABC234" not in old
    resolved = await (await client.get("/console?status=resolved")).text()
    assert "没有符合条件的工单" in resolved


async def test_merchant_text_is_shown_as_text(client):
    await login(client)
    created = await case(client)
    page = await (await client.get(f"/console/cases/{created['id']}")).text()
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "411111******1111" in page and "4111111111111111" not in page


async def test_the_case_shows_the_error_code_the_merchant_named(client):
    await login(client)
    other = await case(client, error_code="1001")
    page = await (await client.get(f"/console/cases/{other['id']}")).text()
    assert '错误码: <span id="error-code">1001</span>' in page
    unnamed = await case(client, ticket="PX-ABC235")
    page = await (await client.get(f"/console/cases/{unnamed['id']}")).text()
    assert '错误码: <span id="error-code">—</span>' in page


async def test_claim_reply_resolve_from_the_case_page(client, rasa):
    await login(client)
    created = await case(client, channel="socketio")
    url = f"/console/cases/{created['id']}"
    token = csrf_of(await (await client.get(url)).text())

    # Each form redirects back to the case page, which shows the outcome once.
    page = await (await client.post(f"{url}/claim", data={"csrf": token})).text()
    assert "已接手" in page and "处理中" in page

    page = await (await client.post(f"{url}/reply", data={"csrf": token, "text": "您好，我是小李"})).text()
    assert rasa.events["shop-17"][-1]["text"] == "您好，我是小李"
    assert "已发送" in page

    rasa.down = True
    page = await (await client.post(f"{url}/reply", data={"csrf": token, "text": "还在查"})).text()
    assert "暂时连不上机器人服务" in page and "未送达，自动重试中" in page
    rasa.down = False

    page = await (await client.post(f"{url}/resolve", data={"csrf": token, "note": "网关已恢复", "category": "server"})).text()
    assert "已结案" in page and "网关已恢复" in page
    assert [e["text"] for e in rasa.events["shop-17"] if e["event"] == "bot"][-3:-1] == [
        "还在查",
        "客服已处理完您的问题（工单 PX-ABC234），对话交还给机器人助手。还有问题可以直接问我。",
    ]


async def test_live_transcript_feed(client, rasa):
    await login(client)
    created = await case(client)
    feed = await (await client.get(f"/console/live/cases/{created['id']}")).json()
    assert feed["status"] == "open" and feed["transcript"][0]["role"] == "user"


async def test_incidents_page_posts_and_ends_an_outage(client):
    await login(client)
    token = csrf_of(await (await client.get("/console/incidents")).text())
    await client.post(
        "/console/incidents",
        data={
            "csrf": token,
            "region": "上海",
            "message_zh": "网关维护",
            "message_en": "Gateway maintenance",
            "expected_end": "2099-01-01T12:00",
        },
    )
    listed = await (await client.get("/api/incidents", headers=AUTH)).json()
    assert [i["message"]["en"] for i in listed["incidents"]] == ["Gateway maintenance"]
    await client.post(f"/console/incidents/{listed['incidents'][0]['id']}/close", data={"csrf": token})
    assert (await (await client.get("/api/incidents", headers=AUTH)).json())["incidents"] == []
    bad = await client.post(
        "/console/incidents",
        data={"csrf": token, "message_zh": "x", "message_en": "y", "expected_end": "2001-01-01T00:00"},
        headers={"Referer": "/console/incidents"},
    )
    assert "预计结束时间必须在将来。" in await bad.text()
    await client.get("/console/lang/en")
    bad = await client.post(
        "/console/incidents",
        data={"csrf": token, "message_zh": "x", "message_en": "y", "expected_end": "2001-01-01T00:00", "channels": "fax"},
        headers={"Referer": "/console/incidents"},
    )
    english = await bad.text()
    assert "Unknown channel" in english and "fax" in english and "choose one of: socketio" in english


async def test_stats_page_in_english(client):
    await login(client)
    await client.post("/api/outcomes", json={"sender_id": "a", "outcome": "resolved", "fixed_step": "restart"}, headers=AUTH)
    await case(client)
    await client.get("/console/lang/en")
    page = await (await client.get("/console/stats")).text()
    assert "Escalations per day" in page and "Solved by the bot" in page and "<svg" in page
    stats = await (await client.get("/api/stats", headers=AUTH)).json()
    assert stats["solved_by_bot"] == 1 and stats["escalated"] == 1
    assert stats["fixed_by_step"]["restart"] == 1

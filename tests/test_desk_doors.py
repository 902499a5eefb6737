"""Bad input at the desk's doors: its JSON API and the console's forms.

The desk app on SQLite in a temporary directory, through aiohttp's test client on
127.0.0.1. Every bad request gets a 4xx with ``{"error": "..."}`` (API) or the form
again with a message (console); nothing accepted is lost or changed; text is stored
verbatim (SQL and markup included) and shown as text.
"""

from __future__ import annotations

import json

import pytest

from tests.harness.desk_app import AUTH, console_client
from tests.harness.desk_app import case, csrf_of, login

SQL = "'; DROP TABLE escalations; --"
MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)>'
EMOJI = "😀🙏🏽👨‍👩‍👧 刷卡报1000"


@pytest.fixture
async def client(tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url) as test_client:
        yield test_client


async def post_raw(client, path: str, data: bytes, content_type: str = "application/json"):
    response = await client.post(path, data=data, headers={**AUTH, "Content-Type": content_type})
    return response.status, await response.json()


async def new_case(client, **changes):
    body = {"sender_id": "shop-door", "summary": "报1000", **changes}
    response = await client.post("/api/escalations", json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    return await response.json()


# --- the JSON API ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", "request body is empty: send a JSON object"),
        (b"  \n ", "request body is empty: send a JSON object"),
        (b"\xff\xfe{}", "request body is not UTF-8"),
        (b'{"sender_id": "\xc3\x28"}', "request body is not UTF-8"),
        (b"{sender_id: 1}", "request body is not valid JSON: Expecting property name enclosed in double quotes"),
        (b"[" * 50_000, "request body is not valid JSON: too deep or a number too long"),
        (
            b'{"sender_id": "a", "transcript": [{"role": "user", "text": "x", "source_ts": ' + b"9" * 5000 + b"}]}",
            "request body is not valid JSON: too deep or a number too long",
        ),
        (b'[{"sender_id": "a"}]', "request body must be a JSON object"),
        (b'"shop-17"', "request body must be a JSON object"),
        (b"null", "request body must be a JSON object"),
        (b'{"sender_id": 17}', "sender_id is required and must be a string"),
        (b'{"sender_id": ["a"]}', "sender_id is required and must be a string"),
        (b'{"sender_id": "   "}', "sender_id must not be empty"),
        (b'{"sender_id": "\\u0000\\u001b"}', "sender_id must not be empty"),
        (json.dumps({"sender_id": "a", "summary": "x" * 100_000}).encode(), "summary is longer than 2000 characters"),
        (b'{"sender_id": "a", "language": ["zh"]}', "language must be one of zh, en"),
        (b'{"sender_id": "a", "priority": 1}', "priority must be one of urgent, high, normal"),
        (b'{"sender_id": "a", "diagnostics": {"step": "network"}}', "diagnostics must be a list of at most 20 {step, outcome} objects"),
        (b'{"sender_id": "a", "diagnostics": ["network"]}', "every diagnostics entry must be an object"),
        (b'{"sender_id": "a", "transcript": "hi"}', "transcript must be a list of at most 500 messages"),
        (b'{"sender_id": "a", "transcript": [{"role": "merchant", "text": "hi"}]}', "transcript role must be one of user, bot, agent"),
        (b'{"sender_id": "a", "transcript": [{"role": "user", "text": "hi", "at": 17}]}', "at must be an ISO 8601 time string"),
    ],
)
async def test_bad_escalation_bodies_get_a_400_that_says_what_is_wrong(client, data, error):
    assert await post_raw(client, "/api/escalations", data) == (400, {"error": error})
    listed = await (await client.get("/api/escalations", headers=AUTH)).json()
    assert listed == {"escalations": [], "next_cursor": None}  # nothing half-stored


async def test_oversized_bodies_are_a_413_json_error(client):
    body = json.dumps({"sender_id": "a", "summary": "x" * 300_000}).encode()
    assert await post_raw(client, "/api/escalations", body) == (413, {"error": "request body too large"})
    created = await new_case(client)
    status, answer = await post_raw(client, f"/api/escalations/{created['id']}/reply", b'{"text": "' + b"x" * 300_000 + b'"}')
    assert (status, answer) == (413, {"error": "request body too large"})


@pytest.mark.parametrize("text", [SQL, MARKUP, EMOJI, "line 1\nline 2\ttabbed", "　全角空格　"])
async def test_text_is_stored_verbatim_and_returned_intact(client, text):
    created = await new_case(client, summary=text, contact=text[:200], sender_id=text, transcript=[{"role": "user", "text": text}])
    again = await (await client.get(f"/api/escalations/{created['id']}", headers=AUTH)).json()
    for field in ("summary", "contact", "sender_id"):
        assert again[field] == text.strip()
    assert again["transcript"][0]["text"] == text.strip()
    listed = await (await client.get("/api/escalations", params={"sender_id": text.strip()}, headers=AUTH)).json()
    assert [c["id"] for c in listed["escalations"]] == [created["id"]]
    reply = await client.post(f"/api/escalations/{created['id']}/reply", json={"text": text}, headers=AUTH)
    assert reply.status == 201 and (await reply.json())["text"] == text.strip()


async def test_control_characters_and_lone_surrogates_are_dropped_not_a_500(client):
    data = b'{"sender_id": "shop\\u0000-1", "summary": "\\ud800pos\\u001b[31m\\u0007 1000\\udfff"}'
    status, created = await post_raw(client, "/api/escalations", data)
    assert status == 201 and (created["sender_id"], created["summary"]) == ("shop-1", "pos[31m 1000")


async def test_card_numbers_in_any_free_text_are_stored_masked(client):
    card = "4111-1111-1111-1111"
    created = await new_case(client, summary=f"卡 {card}", contact=f"卡号{card}", transcript=[{"role": "user", "text": f"卡号 {card}"}])
    await client.post(f"/api/escalations/{created['id']}/reply", json={"text": f"您的卡 {card}"}, headers=AUTH)
    await client.post(f"/api/escalations/{created['id']}/resolve", json={"note": f"card {card}"}, headers=AUTH)
    stored = await (await client.get(f"/api/escalations/{created['id']}", headers=AUTH)).text()
    assert "4111-1111-1111-1111" not in stored and "4111111111111111" not in stored
    assert stored.count("411111******1111") == 5


@pytest.mark.parametrize("case_id", ["abc", "-1", "0", "1.5", "٣", "99999999999999999999999999", "1e3"])
@pytest.mark.parametrize("action", ["", "/claim", "/reply", "/resolve"])
async def test_odd_ids_are_a_404(client, case_id, action):
    method = "GET" if not action else "POST"
    response = await client.request(
        method, f"/api/escalations/{case_id}{action}", json={"agent": "li", "text": "hi", "note": "n"}, headers=AUTH
    )
    assert response.status == 404 and await response.json() == {"error": "not found"}


@pytest.mark.parametrize(
    "path, body, error",
    [
        ("/reply", {"text": ""}, "text must not be empty"),
        ("/reply", {"text": " \n\t "}, "text must not be empty"),
        ("/reply", {"text": None}, "text is required and must be a string"),
        ("/reply", {"text": "x" * 100_000}, "text is longer than 4000 characters"),
        ("/reply", {"text": "hi", "agent": {"name": "li"}}, "agent is required and must be a string"),
        ("/claim", {}, "agent is required and must be a string"),
        ("/claim", {"agent": "x" * 65}, "agent is longer than 64 characters"),
        ("/resolve", {"note": ""}, "note must not be empty"),
        ("/resolve", {"note": 1}, "note is required and must be a string"),
    ],
)
async def test_bad_case_actions_get_a_400_and_change_nothing(client, rasa, path, body, error):
    created = await new_case(client)
    response = await client.post(f"/api/escalations/{created['id']}{path}", json=body, headers=AUTH)
    assert response.status == 400 and await response.json() == {"error": error}
    after = await (await client.get(f"/api/escalations/{created['id']}", headers=AUTH)).json()
    assert (after["status"], after["transcript"], after["claimed_by"]) == ("open", [], None)
    assert rasa.events == {}


@pytest.mark.parametrize(
    "body, error",
    [
        ({"message": "down"}, "message must be an object with zh and en texts"),
        ({"message": {"zh": "维护", "en": ""}}, "en must not be empty"),
        ({"message": {"zh": "维护", "en": "x"}, "starts_at": "tomorrow"}, "starts_at is not an ISO 8601 time: 'tomorrow'"),
        (
            {"message": {"zh": "维护", "en": "x"}, "starts_at": "2026-11-25T10:00:00Z", "expected_end": "2026-11-25T09:00:00Z"},
            "expected_end must be after starts_at",
        ),
        ({"message": {"zh": "维护", "en": "x"}, "region": ["north"]}, "region is required and must be a string"),
    ],
)
async def test_bad_incidents_get_a_400(client, body, error):
    response = await client.post("/api/incidents", json=body, headers=AUTH)
    assert response.status == 400 and await response.json() == {"error": error}


@pytest.mark.parametrize(
    "query, status",
    [({"status": "closed"}, 400), ({"status": ""}, 400), ({"ticket": SQL}, 200), ({"sender_id": "\x00"}, 200), ({"all": "?"}, 200)],
)
async def test_odd_query_parameters(client, query, status):
    path = "/api/incidents" if "all" in query else "/api/escalations"
    response = await client.get(path, params=query, headers=AUTH)
    assert response.status == status
    answer = await response.json()
    assert answer == {"error": "status must be one of open, claimed, resolved"} if status == 400 else "error" not in answer


# --- the console's forms -----------------------------------------------------------------


async def form_page(client, path: str):
    response = await client.get(path)
    assert response.status == 200
    return await response.text()


async def test_login_form_with_empty_huge_markup_or_broken_fields_just_fails(client):
    html = await form_page(client, "/console/login")
    for fields in (
        {"username": "", "password": ""},
        {"username": MARKUP, "password": MARKUP},
        {"username": "li", "password": "x" * 100_000},
        {"username": "li\x00", "password": "\x00"},
        {"username": SQL, "password": SQL},
    ):
        response = await client.post("/console/login", data={"csrf": csrf_of(html), **fields}, allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == "/console/login"
        html = await form_page(client, "/console/login")
        assert "用户名或密码不对" in html and MARKUP not in html
    assert (await client.get("/console", allow_redirects=False)).status == 302


async def test_login_form_not_utf8_and_oversized_bodies(client):
    html = await form_page(client, "/console/login")
    broken = f"csrf={csrf_of(html)}&username=%FF%FE&password=%C3%28".encode()
    response = await client.post(
        "/console/login", data=broken, allow_redirects=False, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status in (302, 400)
    if response.status == 302:
        assert response.headers["Location"] == "/console/login"
    huge = await client.post("/console/login", data={"csrf": csrf_of(html), "username": "li", "password": "x" * 300_000})
    assert huge.status == 413 and await huge.json() == {"error": "request body too large"}


async def test_console_forms_refuse_a_missing_or_forged_csrf_token(client):
    await login(client)
    created = await case(client)
    for path, fields in (
        (f"/console/cases/{created['id']}/reply", {"text": "hi"}),
        (f"/console/cases/{created['id']}/claim", {}),
        (f"/console/cases/{created['id']}/resolve", {"note": "done"}),
        ("/console/incidents", {"message_zh": "维护", "message_en": "maintenance"}),
        ("/console/logout", {}),
    ):
        for csrf in ({}, {"csrf": ""}, {"csrf": "forged"}):
            response = await client.post(path, data={**fields, **csrf}, allow_redirects=False)
            assert response.status == 403, path
    after = await (await client.get(f"/api/escalations/{created['id']}", headers=AUTH)).json()
    assert after["status"] == "open" and [m["kind"] for m in after["transcript"]] == ["transcript"]


async def test_console_reply_and_resolve_with_empty_or_huge_text_are_refused_with_a_message(client, rasa):
    await login(client)
    created = await case(client)
    page_path = f"/console/cases/{created['id']}"
    for path, fields, message in (
        ("/reply", {"text": "  "}, "请填写「内容」。"),
        ("/reply", {"text": "x" * 100_000}, "「内容」超过 4000 个字符。"),
        ("/resolve", {"note": ""}, "请填写「处理说明」。"),
    ):
        html = await form_page(client, page_path)
        response = await client.post(
            page_path + path,
            data={"csrf": csrf_of(html), **fields},
            headers={"Referer": f"http://{client.host}:{client.port}{page_path}"},
            allow_redirects=False,
        )
        assert response.status == 302 and response.headers["Location"].endswith(page_path)
        assert message in await form_page(client, page_path)
    after = await (await client.get(f"/api/escalations/{created['id']}", headers=AUTH)).json()
    assert after["status"] == "open" and rasa.events == {}


async def test_console_shows_markup_as_text(client, rasa):
    await login(client)
    created = await case(client)
    html = await form_page(client, f"/console/cases/{created['id']}")
    await client.post(f"/console/cases/{created['id']}/reply", data={"csrf": csrf_of(html), "text": MARKUP})
    page = await form_page(client, f"/console/cases/{created['id']}")
    assert MARKUP not in page and "&lt;script&gt;alert(" in page
    feed = await (await client.get(f"/console/live/cases/{created['id']}")).json()
    assert MARKUP in [m["text"] for m in feed["transcript"]]  # JSON for textContent, not HTML


async def test_console_incident_form_bad_input(client):
    await login(client)
    # The console's session language is Chinese: the form errors are in its words.
    for fields, message in (
        ({"message_zh": "", "message_en": ""}, "请填写「中文说明」。"),
        ({"message_zh": "维护", "message_en": "x" * 5000}, "「英文说明」超过 1000 个字符。"),
        ({"message_zh": "维护", "message_en": "m", "expected_end": "not a time"}, "「预计恢复」不是有效的时间。"),
        ({"message_zh": "维护", "message_en": "m", "region": "Atlantis"}, "未知地区「Atlantis」"),
    ):
        html = await form_page(client, "/console/incidents")
        response = await client.post("/console/incidents", data={"csrf": csrf_of(html), **fields}, allow_redirects=False)
        assert response.status == 302
        assert message in await form_page(client, "/console/incidents")
    # Markup goes into merchants' chats as it is: refused, with a message in words.
    html = await form_page(client, "/console/incidents")
    await client.post("/console/incidents", data={"csrf": csrf_of(html), "message_zh": MARKUP, "message_en": SQL}, allow_redirects=False)
    page = await form_page(client, "/console/incidents")
    assert MARKUP not in page and "「中文说明」只能是纯文本" in page
    assert (await (await client.get("/api/incidents", headers=AUTH)).json())["incidents"] == []
    await client.post("/console/incidents", data={"csrf": csrf_of(page), "message_zh": "维护", "message_en": SQL})
    incidents = await (await client.get("/api/incidents", headers=AUTH)).json()
    assert [(i["message"]["zh"], i["message"]["en"]) for i in incidents["incidents"]] == [("维护", SQL)]


@pytest.mark.parametrize("case_id", ["abc", "99999999999999999999999999", "٣"])
async def test_console_odd_case_ids_are_a_404_page(client, case_id):
    await login(client)
    response = await client.get(f"/console/cases/{case_id}")
    assert response.status == 404


@pytest.mark.parametrize(
    "referer",
    ["https://attacker.example/phish", "//attacker.example/x", "javascript:alert(1)", "http://127.0.0.1:1/console", "not a url at all"],
)
async def test_language_switch_does_not_redirect_off_site(client, referer):
    response = await client.get("/console/lang/en", headers={"Referer": referer}, allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/console"

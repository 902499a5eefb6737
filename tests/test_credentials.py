"""Every door of the desk that is not public asks for a credential.

The desk app on SQLite in a temporary directory (aiohttp's test client on 127.0.0.1).
Routes are read from the app's router, so a page or endpoint added later is checked
too — or this test fails until it is declared public here on purpose. Rasa's HTTP API
and the action server are checked against real processes in tests/test_rasa_doors.py.
"""

from __future__ import annotations

import base64
import logging
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from support_desk.accounts import verify_password
from support_desk.api import STORE
from support_desk.app import create_app
from support_desk.openapi import openapi_document
from tests.harness.desk_app import AUTH, TOKEN, desk_settings
from tests.harness.desk_app import csrf_of, login

# Deliberately public: liveness, the API description, the merchants' help page with its
# widget, the login form, the language switch.
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/api/openapi.json"),
    ("GET", "/chat"),
    ("GET", "/chat/webchat.js"),
    ("GET", "/console/login"),
    ("POST", "/console/login"),
    ("GET", "/console/lang/{lang}"),
    ("GET", "/console/static/{name}"),  # the console's own scripts, nothing secret
}
SECRET_KEY = desk_settings("sqlite://").secret_key


@pytest.fixture
async def client(tmp_path, rasa):
    from support_desk.accounts import create_agent

    app = create_app(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}", rasa.url))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        test_client.app_ = app
        test_client.password = await create_agent(app[STORE], "li")
        yield test_client


def desk_routes():
    """(method, path template) of every route the desk serves."""
    app = create_app(desk_settings("sqlite://"))
    found = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        found.add((route.method, route.resource.canonical))
    return sorted(found)


ROUTES = desk_routes()
PROTECTED = [route for route in ROUTES if route not in PUBLIC]


def concrete(path: str) -> str:
    return path.replace("{id}", "1").replace("{lang}", "en")


def test_the_router_and_the_public_list_agree():
    assert PUBLIC <= set(ROUTES)
    assert len(PROTECTED) >= 20 and all(p.startswith(("/api/", "/console")) for _, p in PROTECTED)


def test_the_openapi_document_marks_exactly_the_public_api_routes_public():
    document = openapi_document()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            public = operation.get("security", document["security"]) == []
            assert public == ((method.upper(), path) in PUBLIC), (method, path)


API = [route for route in PROTECTED if route[1].startswith("/api/")]
CONSOLE = [route for route in PROTECTED if route[1].startswith("/console")]


WRONG_CREDENTIALS = [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"bearer{TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": "Bearer"},
    {"X-Token": TOKEN},
    {"Authorization": "Bearer 令牌"},
]


@pytest.mark.parametrize("method, path", API)
async def test_every_api_route_refuses_without_the_bearer_token(client, method, path):
    for headers in WRONG_CREDENTIALS:  # and a token in the query string is no credential
        response = await client.request(method, concrete(path), json={}, headers=headers, params={"token": TOKEN})
        assert response.status == 401, headers
        assert await response.json() == {"error": "missing or wrong bearer token"}


@pytest.mark.parametrize("method, path", API)
async def test_a_console_login_does_not_open_the_api(client, method, path):
    await login(client)
    response = await client.request(method, concrete(path), json={})
    assert response.status == 401 and await response.json() == {"error": "missing or wrong bearer token"}


@pytest.mark.parametrize("method, path", API)
async def test_with_the_token_no_api_route_answers_401(client, method, path):
    response = await client.request(method, concrete(path), json={}, headers=AUTH)
    assert response.status != 401 and response.status < 500


@pytest.mark.parametrize("method, path", CONSOLE)
async def test_every_console_route_needs_a_login(client, method, path):
    response = await client.request(
        method,
        concrete(path),
        allow_redirects=False,
        headers=AUTH,
        data={"csrf": "x", "text": "hi", "note": "n", "message_zh": "z", "message_en": "e"},
    )
    # Read by the pages' scripts (canned replies, the live stream and its reads): JSON, not a redirect.
    if path.endswith("/cases/{id}/canned") or path == "/console/events" or path.startswith("/console/live/"):
        assert response.status == 401 and await response.json() == {"error": "login required"}
    elif path.startswith("/console/attachments/"):
        # A merchant's picture: not even whether it exists, to anyone but an agent.
        assert response.status == 404
    else:
        assert response.status == 302 and response.headers["Location"] == "/console/login"


async def test_session_cookie_is_httponly_samesite_strict_and_opaque(client):
    before = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("desk_session")
    response = await login(client)
    cookie = response.cookies["desk_session"]
    assert cookie["httponly"] is True and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert int(cookie["max-age"]) <= 8 * 3600
    # Encrypted, not signed JSON: a Fernet token (version byte 0x80), no plaintext inside.
    # (Checking the base64 text for "li" failed whenever the ciphertext happened to spell it.)
    token = base64.urlsafe_b64decode(cookie.value + "=" * (-len(cookie.value) % 4))
    assert token[0] == 0x80 and b"agent" not in token and b'"li"' not in token
    assert before is None or before.value != cookie.value  # a new session at login (no fixation)


async def test_logout_ends_the_session(client):
    await login(client)
    page = await (await client.get("/console")).text()
    response = await client.post("/console/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/console/login"
    assert (await client.get("/console", allow_redirects=False)).headers["Location"] == "/console/login"


@pytest.mark.parametrize("value", ["gAAAAAforged", '{"session": {"agent": "li"}}', "", "\u00ff" * 50])
async def test_a_forged_session_cookie_is_no_login(client, value):
    client.session.cookie_jar.update_cookies({"desk_session": value})
    response = await client.get("/console", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/console/login"


async def test_login_is_rate_limited_per_user_and_address(client):
    for _ in range(5):
        assert (await login(client, password="wrong")).headers["Location"] == "/console/login"
    blocked = await login(client)  # the right password, too late
    assert blocked.headers["Location"] == "/console/login"
    assert "尝试次数过多" in await (await client.get("/console/login")).text()
    assert (await client.get("/console", allow_redirects=False)).status == 302


async def test_password_is_stored_as_an_argon2id_hash(client):
    stored = await client.app_[STORE].agent_password_hash("li")
    assert stored.startswith("$argon2id$") and client.password not in stored
    assert verify_password(stored, client.password) and not verify_password(stored, client.password + "x")
    assert not verify_password(None, client.password)  # unknown user


async def test_no_secret_reaches_the_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    await client.get("/api/escalations", headers=AUTH)
    await client.get("/api/escalations", headers={"Authorization": "Bearer wrong-guess-token"})
    await client.post("/api/escalations", data=b"{not json", headers=AUTH)
    await login(client)
    await login(client, password="wrong-guess-password")
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (TOKEN, client.password, SECRET_KEY, "wrong-guess-token", "wrong-guess-password"):
        assert secret not in text
    assert not re.search(r"\$argon2", text)

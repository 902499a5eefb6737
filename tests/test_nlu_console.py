"""The NLU inbox through the desk app (aiohttp's test client): filled by Rasa's event
batches, the console page for operators only (agents 403, nobody logged in: the login
page), merchant text escaped, labels from the form and the API (bearer token), and an
agent's flag on a case page."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from support_desk.accounts import create_agent
from support_desk.api import SETTINGS, STORE
from support_desk.app import create_app
from tests.harness.desk_app import AUTH, SCRIPT, csrf_of, desk_settings, login


@pytest.fixture
async def client(tmp_path, rasa):
    settings = replace(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}", rasa.url), nlu_reviewed_file=tmp_path / "reviewed.yml")
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as test_client:
        test_client.password = await create_agent(test_client.app[STORE], "li", role="operator")
        test_client.agent_password = await create_agent(test_client.app[STORE], "wang", role="agent")
        yield test_client


def user(text: str, ts: float, intent: str = "ask_how_to_fix", confidence: float = 0.2, sender: str = "m-1") -> dict:
    nlu = {"intent": intent, "confidence": confidence, "ranking": [{"name": intent, "confidence": confidence}], "clicked": False}
    return {"sender_id": sender, "event": "user", "text": text, "timestamp": ts, "nlu": nlu}


async def push(client, events) -> None:
    response = await client.post("/api/rasa/events", headers=AUTH, json={"events": events})
    assert response.status == 200, await response.text()


async def api(client, method, path, body=None, status=200):
    response = await client.request(method, path, json=body, headers=AUTH)
    assert response.status == status, await response.text()
    return await response.json()


async def log_in_as(client, username: str, password: str) -> None:
    form = await (await client.get("/console/login")).text()
    answer = await client.post(
        "/console/login", data={"csrf": csrf_of(form), "username": username, "password": password}, allow_redirects=False
    )
    assert answer.status == 302 and answer.headers["Location"] == "/console"


async def test_only_operators_see_the_inbox_agents_get_a_clear_403_and_strangers_the_login(client):
    answer = await client.get("/console/nlu", allow_redirects=False)
    assert answer.status == 302 and answer.headers["Location"] == "/console/login"
    await log_in_as(client, "wang", client.agent_password)
    refused = await client.get("/console/nlu")
    assert refused.status == 403 and "只有运维人员可以查看和标注 NLU 待审" in await refused.text()
    queue = await (await client.get("/console")).text()
    assert 'href="/console/nlu"' not in queue
    form = {"csrf": csrf_of(queue), "version": "1", "intent": "greet", "decision": "label"}
    assert (await client.post("/console/nlu/1/label", data=form, allow_redirects=False)).status == 403


async def test_the_operator_reads_escaped_messages_and_labels_them_from_the_form(client):
    now = time.time()
    await push(
        client,
        [user(f"报1000了 {SCRIPT}", now), user("怎么办理pos机", now + 1, "faq", 0.3), user("pos机报1000咋整", now + 2, confidence=0.99)],
    )
    assert (await login(client)).status == 302
    html = await (await client.get("/console/nlu")).text()
    assert 'href="/console/nlu" id="nav-nlu"' in html
    assert SCRIPT not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "pos机报1000咋整" not in html  # the bot was sure
    assert '<option value="faq/apply_pos">' in html and 'list="nlu-intents"' in html
    first = await (await client.get("/console/nlu?limit=1")).text()
    [older] = re.findall(r'id="page-older" href="([^"]+)"', first)
    second = await (await client.get(older.replace("&amp;", "&") + "&limit=1")).text()
    assert "怎么办理pos机" in first and "怎么办理pos机" not in second and 'id="page-first"' in second
    [entry] = [e for e in (await api(client, "GET", "/api/nlu/inbox"))["items"] if SCRIPT in e["text"]]
    form = {"csrf": csrf_of(html), "version": str(entry["version"]), "intent": "ask_how_to_fix", "decision": "label"}
    done = await client.post(f"/console/nlu/{entry['id']}/label", data=form)
    assert "已标注为 ask_how_to_fix" in await done.text()
    written = client.app[SETTINGS].nlu_reviewed_file
    assert "ask_how_to_fix" in written.read_text(encoding="utf-8")
    # The same form again (the page was not reloaded): nothing is saved, the page says why.
    again = await client.post(f"/console/nlu/{entry['id']}/label", data={**form, "intent": "greet"})
    assert "刚被别人审核过" in await again.text() and "greet" not in written.read_text(encoding="utf-8")
    unknown = await client.post(f"/console/nlu/{entry['id']}/label", data={**form, "version": "2", "intent": "ask_the_moon"})
    assert "不在 domain 里" in await unknown.text()
    labelled = await (await client.get("/console/nlu?status=labelled&order=frequent")).text()
    assert "标注：ask_how_to_fix（li）" in labelled


async def test_the_api_pages_and_labels_with_the_version(client):
    now = time.time()
    await push(client, [user(f"问题{'嗯' * n}", now + n) for n in range(3)])
    first = await api(client, "GET", "/api/nlu/inbox?limit=2")
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = await api(client, "GET", f"/api/nlu/inbox?limit=2&cursor={first['next_cursor']}")
    assert [e["text"] for e in first["items"] + rest["items"]] == ["问题嗯嗯", "问题嗯", "问题"] and rest["next_cursor"] is None
    entry = first["items"][0]
    labelled = await api(client, "POST", f"/api/nlu/inbox/{entry['id']}/label", {"intent": "ask_how_to_fix", "version": 1})
    assert (labelled["status"], labelled["reviewed_by"], labelled["version"]) == ("labelled", "api", 2)
    stale = await api(client, "POST", f"/api/nlu/inbox/{entry['id']}/label", {"action": "ignore", "version": 1}, status=409)
    assert "reviewed meanwhile" in stale["error"]
    for body, message in [
        ({"intent": "nope", "version": 2}, "not in the domain"),
        ({"version": 2}, "either intent or action"),
        ({"intent": "greet", "action": "ignore", "version": 2}, "either intent or action"),
        ({"action": "delete", "version": 2}, "action must be one of"),
        ({"intent": "greet", "version": "two"}, "version must be"),
        ({"intent": ["greet"], "version": 2}, "must be strings"),
    ]:
        assert message in (await api(client, "POST", f"/api/nlu/inbox/{entry['id']}/label", body, status=400))["error"]
    assert (await api(client, "POST", "/api/nlu/inbox/999/label", {"action": "ignore", "version": 1}, status=404))["error"] == "not found"
    assert (await api(client, "GET", "/api/nlu/inbox?status=done", status=400))["error"].startswith("status must be one of")
    assert (await client.get("/api/nlu/inbox")).status == 401


async def test_an_agent_flags_a_merchant_message_on_the_case_page(client):
    answer = await client.post(
        "/api/escalations",
        headers=AUTH,
        json={
            "sender_id": "m-7",
            "ticket": "PX-NLU234",
            "transcript": [{"role": "user", "text": f"我的卡 4111111111111111 {SCRIPT}"}, {"role": "bot", "text": "好的"}],
        },
    )
    case = await answer.json()
    await log_in_as(client, "wang", client.agent_password)
    page = await (await client.get(f"/console/cases/{case['id']}")).text()
    [action] = re.findall(r'action="(/console/cases/\d+/messages/\d+/flag)"', page)  # the merchant's message only
    flagged = await client.post(action, data={"csrf": csrf_of(page)})
    assert "已加入 NLU 待审" in await flagged.text()
    [entry] = (await api(client, "GET", "/api/nlu/inbox"))["items"]
    assert entry["reasons"] == ["flagged"] and entry["flagged_by"] == "wang" and "411111******1111" in entry["text"]
    bot_message = int(action.split("/")[-2]) + 1
    missing = await client.post(f"/console/cases/{case['id']}/messages/{bot_message}/flag", data={"csrf": csrf_of(page)})
    assert missing.status == 404
    no_csrf = await client.post(action, data={}, allow_redirects=False)
    assert no_csrf.status == 403


async def test_a_reviewed_file_that_cannot_be_written_is_a_503_that_says_so(tmp_path, rasa):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the reviewed file's folder should be")
    settings = replace(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}", rasa.url), nlu_reviewed_file=blocker / "reviewed.yml")
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        await push(client, [user("小票打印不出来", time.time())])
        [entry] = (await api(client, "GET", "/api/nlu/inbox"))["items"]
        refused = await api(client, "POST", f"/api/nlu/inbox/{entry['id']}/label", {"intent": "ask_how_to_fix", "version": 1}, status=503)
        assert refused["error"].startswith("reviewed.yml cannot be written") and "nothing was saved" in refused["error"]
        [kept] = (await api(client, "GET", "/api/nlu/inbox"))["items"]
        assert (kept["status"], kept["version"]) == ("new", 1)

"""The incident API and console pages with aiohttp's test client and the Rasa double:
bad input, linking, closing with each merchant told once in their language, Rasa down or
losing its answer, held messages, operators only, proposals on the queue."""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from support_desk import incident_input
from support_desk.api import SETTINGS
from support_desk.incident_api import NOTICES
from tests.harness.desk_app import AUTH, RasaDouble, console_client

INCIDENT = {"message": {"zh": "网关故障，正在抢修", "en": "Gateway down, being fixed"}}


@pytest.fixture
async def client(tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url, agent="zhao") as test_client:
        yield test_client


@pytest.fixture
def region_table(tmp_path, monkeypatch):
    """A small region table in place of data/knowledge/regions.yml."""
    table = tmp_path / "regions.yml"
    table.write_text(
        'regions:\n  "44": {zh: 广东省, en: Guangdong}\n  "4403": {zh: 深圳市, en: Shenzhen, parent: "44"}\n', encoding="utf-8"
    )
    monkeypatch.setattr(incident_input, "REGIONS_FILE", table)
    yield


async def call(client, method, path, body=None, status=200):
    response = await client.request(method, path, json=body, headers=AUTH)
    assert response.status == status, await response.text()
    return await response.json()


def link_body(sender, **changes):
    return {"sender_id": sender, "channel": "socketio", "language": "zh", "wants_person": True, **changes}


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "message must be an object"),
        ({**INCIDENT, "starts_at": "2099-01-01T10:00:00Z", "expected_end": "2099-01-01T09:00:00Z"}, "expected_end must be after starts_at"),
        ({**INCIDENT, "expected_end": "tomorrow"}, "expected_end is not an ISO 8601 time"),
        ({**INCIDENT, "scope": {"channels": ["fax"]}}, "unknown channel 'fax'"),
        ({**INCIDENT, "scope": {"terminal_models": ["Nokia 3310"]}}, "unknown terminal model"),
        ({**INCIDENT, "scope": {"planets": ["mars"]}}, "scope has no dimension 'planets'"),
        ({**INCIDENT, "scope": {"regions": "4403"}}, "scope.regions must be a list"),
        ({**INCIDENT, "scope": ["4403"]}, "scope must be an object"),
        ({"message": {"zh": "x" * 100_000, "en": "y"}}, "zh is longer than 1000 characters"),
        ({"message": {"zh": "维护", "en": "<b>maintenance</b>"}}, "en must be plain text"),
        ({"message": {"zh": "维护&amp;升级", "en": "x"}}, "zh must be plain text"),
        ({"message": {"zh": "", "en": "x"}}, "zh must not be empty"),
    ],
)
async def test_bad_incidents_get_a_clear_400_and_nothing_is_posted(client, body, message):
    answer = await call(client, "POST", "/api/incidents", body, status=400)
    assert message in answer["error"]
    assert (await call(client, "GET", "/api/incidents?all=1"))["incidents"] == []


async def test_regions_are_codes_or_names_of_the_region_table(client, region_table):
    posted = await call(
        client, "POST", "/api/incidents", {**INCIDENT, "scope": {"regions": ["深圳", "44"], "terminal_models": ["A920"]}}, status=201
    )
    assert posted["scope"]["regions"] == ["4403", "44"] and posted["region"] == "4403"
    assert posted["scope"]["terminal_models"] == ["pax_a920"]
    legacy = await call(client, "POST", "/api/incidents", {**INCIDENT, "region": "Guangdong"}, status=201)
    assert legacy["scope"]["regions"] == ["44"]
    everyone = await call(client, "POST", "/api/incidents", {**INCIDENT, "region": "all"}, status=201)
    assert everyone["scope"] == {"regions": [], "channels": [], "gateways": [], "terminal_models": []}
    unknown = await call(client, "POST", "/api/incidents", {**INCIDENT, "scope": {"regions": ["Atlantis"]}}, status=400)
    assert "unknown region 'Atlantis'" in unknown["error"]
    bad_report = await call(
        client, "POST", "/api/incidents/reports", {"sender_id": "s", "channel": "rest", "kind": "reported", "region": "9999"}, status=400
    )
    assert "unknown region" in bad_report["error"]


async def test_linking_is_idempotent_per_sender_and_needs_an_active_incident(client):
    incident = await call(client, "POST", "/api/incidents", INCIDENT, status=201)
    path = f"/api/incidents/{incident['id']}/merchants"
    first = await call(client, "POST", path, link_body("shop-1", contact="13812345678"), status=201)
    assert first["ticket"] == incident["ticket"] and first["merchant"]["wants_person"] is True
    again = await call(client, "POST", path, link_body("shop-1", wants_person=False, subscribed=True))
    assert again["merchant"]["wants_person"] is True and again["merchant"]["subscribed"] is True
    bad = await call(client, "POST", path, link_body("shop-2", wants_person="yes"), status=400)
    assert bad["error"] == "wants_person must be true or false"
    assert (await call(client, "POST", path, {"channel": "rest"}, status=400))["error"].startswith("sender_id")
    await call(client, "POST", f"/api/incidents/{incident['id']}/close", {"note": "back"})
    assert await call(client, "POST", path, link_body("shop-3"), status=404) == {"error": "not found"}
    assert (await call(client, "GET", f"/api/incidents/{incident['id']}"))["merchants"] == 1


async def test_closing_tells_each_merchant_once_in_their_language(client, rasa):
    incident = await call(client, "POST", "/api/incidents", INCIDENT, status=201)
    for sender, language in (("shop-zh", "zh"), ("shop-en", "en"), ("wm-oa", "zh")):
        await call(
            client,
            "POST",
            f"/api/incidents/{incident['id']}/merchants",
            link_body(sender, language=language, channel="wechat" if sender == "wm-oa" else "socketio"),
            status=201,
        )
    closed = await call(client, "POST", f"/api/incidents/{incident['id']}/close", {"note": "gateway back"})
    assert closed["status"] == "resolved" and closed["notices_planned"] == 3
    await client.app[NOTICES].idle()
    assert sorted(rasa.events) == ["shop-en", "shop-zh", "wm-oa"]
    for sender, events in rasa.events.items():
        [event] = events
        assert event["event"] == "bot" and event["metadata"]["desk_message_id"] > 0
        words = "reversed automatically" if sender == "shop-en" else "自动冲正"
        assert words in event["text"] and re.search(r"\d\d:\d\d–\d\d:\d\d", event["text"])
    again = await call(client, "POST", f"/api/incidents/{incident['id']}/close", {"note": "twice"})
    await client.app[NOTICES].idle()
    await client.app[NOTICES].send_due()
    assert again["notices_planned"] == 0 and sum(len(e) for e in rasa.events.values()) == 3

    # The Official Account could not send it (48-hour window): listed as not reached.
    message_id = rasa.events["wm-oa"][0]["metadata"]["desk_message_id"]
    await call(
        client,
        "POST",
        "/api/channel/reports",
        {
            "reports": [
                {
                    "kind": "delivery",
                    "report_id": "oa-1",
                    "sender_id": "wm-oa",
                    "channel": "wechat",
                    "at": 1_800_000_000,
                    "desk_message_id": message_id,
                    "text": "x",
                    "state": "held",
                    "reason": "48-hour window closed",
                }
            ]
        },
    )
    shown = await call(client, "GET", f"/api/incidents/{incident['id']}")
    assert shown["notices"] == {"reached": 2, "not_reached": 1, "waiting": 0, "not_planned": 0}
    assert shown["all_told_at"] and shown["close_note"] == "gateway back"
    case = await call(client, "GET", f"/api/escalations/{incident['escalation_id']}")
    assert case["status"] == "resolved" and case["resolution_note"] == "gateway back"


async def test_the_shared_case_sends_nothing_and_points_to_the_incident(client, rasa):
    incident = await call(client, "POST", "/api/incidents", INCIDENT, status=201)
    case_url = f"/api/escalations/{incident['escalation_id']}"
    # No merchant's conversation is behind it: a reply or a resolve would tell nobody.
    refused = await call(client, "POST", f"{case_url}/reply", {"text": "on it", "agent": "zhao"}, status=409)
    assert incident["ticket"] in refused["error"] and f"/console/incidents/{incident['id']}" in refused["error"]
    await call(client, "POST", f"{case_url}/resolve", {"note": "done", "category": "server"}, status=409)
    await call(client, "POST", f"{case_url}/handback", {"note": "bot"}, status=409)
    claimed = await call(client, "POST", f"{case_url}/claim", {"agent": "zhao"})
    assert claimed["status"] == "claimed" and claimed["transcript"] == []  # no "agent joined" to nobody
    assert rasa.events == {}  # nothing appended to any conversation
    await login(client)
    page = await (await client.get(f"/console/cases/{incident['escalation_id']}")).text()
    assert 'id="reply-form"' not in page and 'id="resolve"' not in page and 'id="handback"' not in page
    assert f'href="/console/incidents/{incident["id"]}"' in page and "统一处理单" in page
    closed = await call(client, "POST", f"/api/incidents/{incident['id']}/close", {"note": "back"})
    assert closed["status"] == "resolved"
    assert (await call(client, "GET", case_url))["status"] == "resolved"


class LosingRasa(RasaDouble):
    """Rasa that stores the events but whose answer never arrives (503 after storing)."""

    lose = True

    async def _append(self, request: web.Request) -> web.Response:
        answer = await super()._append(request)
        return web.json_response({"message": "timeout"}, status=503) if self.lose else answer


@pytest.mark.parametrize("losing", [False, True])
async def test_rasa_down_or_losing_its_answer_still_tells_each_merchant_once(tmp_path, losing):
    rasa = LosingRasa() if losing else RasaDouble()
    url = await rasa.start()
    try:
        async with console_client(tmp_path / "desk.db", url) as client:
            notices = client.app[NOTICES]
            notices.recheck = notices.recheck * 0  # the next round rechecks at once
            incident = await call(client, "POST", "/api/incidents", INCIDENT, status=201)
            for sender in ("a", "b"):
                await call(client, "POST", f"/api/incidents/{incident['id']}/merchants", link_body(sender), status=201)
            rasa.down = not losing
            await call(client, "POST", f"/api/incidents/{incident['id']}/close")
            await notices.idle()
            waiting = await call(client, "GET", f"/api/incidents/{incident['id']}")
            assert waiting["notices"]["waiting"] == 2 and waiting["all_told_at"] is None
            assert all(m["notice_reason"].startswith("Rasa answered 503") for m in waiting["linked"])
            rasa.down, rasa.lose = False, False
            await notices.send_due()
            await notices.send_due()
            assert {sender: len(events) for sender, events in rasa.events.items()} == {"a": 1, "b": 1}
            told = await call(client, "GET", f"/api/incidents/{incident['id']}")
            assert told["notices"]["reached"] == 2 and told["all_told_at"]
    finally:
        await rasa.server.close()


async def confirm_on_console(client, proposal_id, page, message_zh, message_en, **scope):
    """Press the proposal page's confirm button with the operator's texts and scope."""
    confirm = await client.post(
        f"/console/incidents/{proposal_id}/confirm",
        data={"csrf": csrf_of(page), "message_zh": message_zh, "message_en": message_en, "timezone": "Asia/Shanghai", **scope},
    )
    assert confirm.status == 200


async def test_reports_raise_a_proposal_shown_on_the_queue_for_an_operator(client, rasa):
    threshold = client.app[SETTINGS].incident_threshold
    for n in range(threshold + 1):
        answer = await call(
            client,
            "POST",
            "/api/incidents/reports",
            {
                "sender_id": f"shop-{n}",
                "channel": "rest" if n % 2 else "socketio",
                "language": "zh",
                "kind": "reported",
                "terminal_model": "新大陆N910",
                "answer": "还是1000",
            },
            status=202,
        )
    [proposal_id] = answer["proposals"]
    assert (await call(client, "GET", "/api/incidents"))["incidents"] == []
    await login(client)
    queue = await (await client.get("/console")).text()
    assert 'id="proposals"' in queue and "terminal_models:newland_n910" in queue
    page = await (await client.get(f"/console/incidents/{proposal_id}")).text()
    assert "21" in re.search(r'id="evidence">([^<]*)', page).group(1)
    await confirm_on_console(client, proposal_id, page, "新大陆 N910 批量故障", "Newland N910 outage", terminal_models="newland_n910")
    shown = await call(client, "GET", f"/api/incidents/{proposal_id}")
    assert shown["status"] == "active" and shown["merchants"] == threshold + 1
    assert 'id="proposals"' not in await (await client.get("/console")).text()
    trail = await (await client.get("/console/incidents")).text()
    assert "zhao · incident.confirm" in trail


async def test_similar_server_status_answers_propose_an_incident_the_operator_scopes(client, rasa):
    threshold = client.app[SETTINGS].incident_threshold
    regions = ["11", "31", "4403", "3301", "5101"]
    for n in range(threshold + 1):
        said = f"还是不行，屏幕显示 <b>连接主机超时</b> 10:{n:02d} 4111111111111111" if n % 2 else "Still no. Screen says HOST TIMEOUT"
        answer = await call(
            client,
            "POST",
            "/api/incidents/reports",
            # One channel each and five regions: only the answers group the reports.
            {"sender_id": f"shop-{n}", "channel": f"rest-{n}", "kind": "server_status_failed", "region": regions[n % 5], "answer": said},
            status=202,
        )
        assert answer["proposals"] == []  # "连接主机超时" and "host timeout" are two messages
    # The Chinese message is short of the threshold until more merchants see it.
    for n in range(threshold + 1, 2 * threshold - 8):
        body = {"sender_id": f"shop-{n}", "channel": f"rest-{n}", "kind": "server_status_failed", "answer": "显示连接主机超时"}
        answer = await call(client, "POST", "/api/incidents/reports", body, status=202)
    [proposal_id] = answer["proposals"]
    shown = await call(client, "GET", f"/api/incidents/{proposal_id}")
    assert shown["evidence"]["key"] == "answers:连接主机超时"
    assert shown["evidence"]["answers"][0] == "显示连接主机超时" and len(shown["evidence"]["answers"]) == 5
    assert all("4111111111111111" not in said for said in shown["evidence"]["answers"])
    await login(client)
    page = await (await client.get(f"/console/incidents/{proposal_id}")).text()
    listed = re.search(r'<ul id="evidence-answers">(.*?)</ul>', page, re.S).group(1)
    assert "&lt;b&gt;" in listed and "<b>" not in listed  # the merchants' words as text
    # Everyone until the operator says where: the confirm form asks for the region.
    form = re.search(r'<form[^>]*id="confirm-form">(.*?)</form>', page, re.S).group(1)
    assert 'name="region" value="all"' in form and 'type="hidden" name="region"' not in form
    await confirm_on_console(client, proposal_id, page, "深圳网关故障", "Shenzhen gateway down", region="4403")
    shown = await call(client, "GET", f"/api/incidents/{proposal_id}")
    assert shown["status"] == "active" and shown["scope"]["regions"] == ["4403"]
    assert shown["merchants"] == sum(1 for n in range(threshold + 1) if n % 5 == 2)


async def test_only_operators_post_confirm_and_close(tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url, agent="li", role="agent") as client:
        incident = await call(client, "POST", "/api/incidents", INCIDENT, status=201)
        await login(client, "li")
        page = await (await client.get("/console/incidents")).text()
        assert 'id="incident-form"' not in page and "只有运维人员" in page
        for path in (
            "/console/incidents",
            f"/console/incidents/{incident['id']}/close",
            f"/console/incidents/{incident['id']}/confirm",
            f"/console/incidents/{incident['id']}/dismiss",
        ):
            response = await client.post(path, data={"csrf": csrf_of(page), "message_zh": "x", "message_en": "y"})
            assert response.status == 403, path
        assert (await call(client, "GET", f"/api/incidents/{incident['id']}"))["status"] == "active"


async def test_console_form_errors_are_shown_as_text(client):
    await login(client)
    page = await (await client.get("/console/incidents")).text()
    token = csrf_of(page)

    async def post(**fields):
        form = {"csrf": token, "message_zh": "网关故障", "message_en": "Gateway down", **fields}
        response = await client.post("/console/incidents", data=form, headers={"Referer": "/console/incidents"})
        return await response.text()

    # In the console's language (Chinese here); the API says the same in English.
    reversed_times = await post(starts_at="2099-01-01T10:00", expected_end="2099-01-01T09:00")
    assert "预计结束时间必须晚于开始时间。" in reversed_times
    assert "只能是纯文本" in await post(message_en='<script>alert("x")</script>')
    assert "未知渠道「fax」" in await post(channels="fax")
    assert "「中文说明」超过 1000 个字符。" in await post(message_zh="x" * 100_000)
    assert (await call(client, "GET", "/api/incidents?all=1"))["incidents"] == []
    done = await post(channels="wecom_kf", terminal_models="sunmi_p2", expected_end="2099-01-01T12:00", timezone="Asia/Shanghai")
    assert "INC-" in done and "wecom_kf" in done
    [posted] = (await call(client, "GET", "/api/incidents?all=1"))["incidents"]
    assert posted["expected_end"] == "2099-01-01T04:00:00+00:00"
    assert posted["scope"]["channels"] == ["wecom_kf"] and posted["scope"]["terminal_models"] == ["sunmi_p2"]
    closed = await client.post(f"/console/incidents/{posted['id']}/close", data={"csrf": token, "note": "好了"})
    assert closed.status == 200 and (await call(client, "GET", "/api/incidents"))["incidents"] == []


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def login(client, username="zhao"):
    form = await (await client.get("/console/login")).text()
    response = await client.post("/console/login", data={"csrf": csrf_of(form), "username": username, "password": client.password})
    assert response.status == 200

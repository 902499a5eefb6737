"""``POST /api/channel/reports`` and ``/api/channel/attachments`` as the contract says
(notes/channel_reports_contract.md in the lead's notes; the channel side posts them), the
pictures on the case page, ``POST /api/outcomes/rating``: the desk app under aiohttp's
test client, Rasa's HTTP API as the double of tests/harness/desk_app.py."""
from __future__ import annotations

import json

import pytest

from support_desk.api import RELAY, SETTINGS, STORE
from support_desk.channel_api import REPORTS_MAX_BYTES
from tests.harness.desk_app import AUTH, console_client
from tests.harness.desk_app import csrf_of, login

SENDER = "wkKF01:wmMERCHANT"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
JPEG = b"\xff\xd8\xff\xe0" + bytes(64)


@pytest.fixture
async def client(tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url) as test_client:
        yield test_client


def report(kind: str, report_id: str, at: float = 1_764_000_000.0, **fields) -> dict:
    return {"kind": kind, "report_id": report_id, "sender_id": SENDER, "channel": "wecom_kf", "at": at, **fields}


async def send(client, *reports: dict):
    response = await client.post("/api/channel/reports", json={"reports": list(reports)}, headers=AUTH)
    return response.status, await response.json()


async def kf_case(client, sender: str = SENDER) -> dict:
    response = await client.post("/api/escalations", headers=AUTH, json={
        "sender_id": sender, "channel": "wecom_kf", "ticket": "PX-KF0001", "summary": "报1000"})
    assert response.status == 201
    return await response.json()


async def reply(client, case_id: int, text: str = "请重启终端"):
    response = await client.post(f"/api/escalations/{case_id}/reply", json={"text": text, "agent": "li"},
                                 headers=AUTH)
    return response.status, await response.json()


async def message(client, case_id: int, message_id: int) -> dict:
    case = await (await client.get(f"/api/escalations/{case_id}", headers=AUTH)).json()
    return next(m for m in case["transcript"] if m["id"] == message_id)


async def test_a_held_reply_reads_in_the_agents_words_then_goes_out(client, rasa):
    case = await kf_case(client)
    status, sent = await reply(client, case["id"])
    # Rasa took it, carrying the desk's id for the channel; the merchant has not got it yet.
    assert status == 201 and sent["delivery"] == "sending"
    assert rasa.events[SENDER][-1]["metadata"]["desk_message_id"] == sent["id"]

    async with client.app[STORE].hub.subscribe() as changes:
        status, body = await send(client, report("delivery", f"wecom_kf:{sent['id']}:held",
                                                 desk_message_id=sent["id"], text="请重启终端", state="held",
                                                 reason="48-hour window closed"))
        assert (status, body) == (200, {"taken": 1, "ignored": 0})
        # Pushed to the open consoles after the commit, like every change.
        assert changes.get_nowait() == {"type": "case", "id": case["id"], "change": "message"}
    shown = await message(client, case["id"], sent["id"])
    assert (shown["delivery"], shown["delivery_reason"]) == ("held", "48-hour window closed")

    await login(client)
    page = await (await client.get(f"/console/cases/{case['id']}")).text()
    assert "未送达（48-hour window closed）：等商户再发消息后自动发出" in page
    await client.get("/console/lang/en")
    live = await (await client.get(f"/console/live/cases/{case['id']}")).json()
    [line] = [m for m in live["transcript"] if m["id"] == sent["id"]]
    assert line["delivery_text"] == "Not delivered (48-hour window closed): waiting for the merchant to write"

    # The merchant wrote again; the channel sent it and says so. The batch is retried too.
    later = report("delivery", f"wecom_kf:{sent['id']}:sent", at=1_764_000_600.0, desk_message_id=sent["id"],
                   text="请重启终端", state="sent")
    assert await send(client, later) == (200, {"taken": 1, "ignored": 0})
    assert await send(client, later) == (200, {"taken": 0, "ignored": 1})
    assert (await message(client, case["id"], sent["id"]))["delivery"] == "delivered"


async def test_a_channel_that_does_not_report_keeps_rasas_word(client):
    response = await client.post("/api/escalations", headers=AUTH, json={
        "sender_id": "tg-1", "channel": "telegram", "ticket": "PX-TG0001"})
    case = await response.json()
    status, sent = await reply(client, case["id"])
    assert status == 201 and sent["delivery"] == "delivered"


async def test_a_wecom_agent_in_the_wecom_client_holds_the_case_until_the_session_ends(client, rasa):
    case = await kf_case(client)
    assert (await send(client, report("session", "s2", state=2, servicer_userid=None)))[1]["taken"] == 1
    await login(client)
    page = await (await client.get(f"/console/cases/{case['id']}")).text()
    assert "在企业微信待接入池中等待" in page and 'id="reply-form"' in page

    await send(client, report("session", "s3", at=1_764_000_010.0, state=3, servicer_userid="zhangsan"),
               report("agent_message", "wecom_kf:m5", at=1_764_000_020.0, text="您好，我是张三",
                      servicer_userid="zhangsan", msgid="m5"))
    status, refused = await reply(client, case["id"], "我也来")
    assert status == 409 and "WeCom client" in refused["error"] and "zhangsan" in refused["error"]
    page = await (await client.get(f"/console/cases/{case['id']}")).text()
    assert 'id="reply-form"' not in page
    assert "此工单由企业微信客服 zhangsan 在企业微信客户端中回复，这里不能发送回复。" in page
    assert "WeCom zhangsan" in page and "您好，我是张三" in page
    live = await (await client.get(f"/console/live/cases/{case['id']}")).json()
    assert live["reply_blocked"] and live["session"] == "由企业微信客服 zhangsan 处理"

    # The session ends in WeCom: resolved, and the bot resumes without a word.
    assert (await send(client, report("session", "s4", at=1_764_000_030.0, state=4,
                                      servicer_userid="zhangsan")))[1]["taken"] == 1
    assert [e["event"] for e in rasa.events[SENDER]] == ["resume", "action"]
    ended = await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json()
    assert (ended["status"], ended["resolved_by"], ended["resolution_note"]) == (
        "resolved", "wecom:zhangsan", "ended in WeCom")
    assert ended["transcript"][-1]["kind"] == "resume" and ended["transcript"][-1]["delivery"] == "delivered"


async def test_the_resume_waits_for_a_rasa_that_is_down(client, rasa):
    case = await kf_case(client)
    rasa.down = True
    assert (await send(client, report("session", "s4", state=4, servicer_userid="zhangsan")))[1]["taken"] == 1
    ended = await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json()
    assert ended["status"] == "resolved" and ended["transcript"][-1]["delivery"] == "waiting"
    rasa.down = False
    assert await client.app[RELAY].deliver_pending() == {}
    assert [e["event"] for e in rasa.events[SENDER]] == ["resume", "action"]


def delivery(**changes) -> dict:
    return {**report("delivery", "r1", desk_message_id=1, text="hi", state="sent"), **changes}


@pytest.mark.parametrize("body, says", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00binary\x00", "not UTF-8"),
    (b"[]", "must be a JSON object"),
    (json.dumps({"reports": {}}).encode(), "reports must be a list of 1 to 200"),
    (json.dumps({"reports": []}).encode(), "reports must be a list of 1 to 200"),
    (json.dumps({"reports": [delivery(report_id=f"r{n}") for n in range(201)]}).encode(), "1 to 200"),
    (json.dumps({"reports": ["delivery"]}).encode(), "reports[0] must be an object"),
    (json.dumps({"reports": [delivery(kind="typing")]}).encode(), "reports[0]: kind must be one of"),
    (json.dumps({"reports": [delivery(channel="sms")]}).encode(), "channel must be one of"),
    (json.dumps({"reports": [delivery(report_id="")]}).encode(), "report_id must not be empty"),
    (json.dumps({"reports": [delivery(report_id="x" * 129)]}).encode(), "report_id is longer than 128"),
    (json.dumps({"reports": [delivery(sender_id=7)]}).encode(), "sender_id is required and must be a string"),
    (json.dumps({"reports": [delivery(at="yesterday")]}).encode(), "at must be unix seconds"),
    (json.dumps({"reports": [delivery(at=True)]}).encode(), "at must be unix seconds"),
    (b'{"reports": [{"kind": "delivery", "report_id": "r", "sender_id": "s", "channel": "wechat", "at": NaN,'
     b' "text": "", "state": "sent"}]}', "at must be unix seconds"),
    (json.dumps({"reports": [delivery(desk_message_id="5")]}).encode(), "desk_message_id must be a positive"),
    (json.dumps({"reports": [delivery(desk_message_id=True)]}).encode(), "desk_message_id must be a positive"),
    (json.dumps({"reports": [delivery(state="read")]}).encode(), "state must be one of sent, held"),
    (json.dumps({"reports": [delivery(state="held")]}).encode(), "reason is required"),
    (json.dumps({"reports": [delivery(text="好" * 4097)]}).encode(), "text is longer than 4096"),
    (json.dumps({"reports": [report("agent_message", "a", text="hi", msgid="m")]}).encode(),
     "servicer_userid is required"),
    (json.dumps({"reports": [report("session", "s", state="3")]}).encode(), "state must be an integer from 0 to 4"),
    (json.dumps({"reports": [report("session", "s", state=5)]}).encode(), "state must be an integer from 0 to 4"),
])
async def test_malformed_reports_get_a_clear_400_and_take_nothing(client, body, says):
    case = await kf_case(client)
    status, sent = await reply(client, case["id"])
    response = await client.post("/api/channel/reports", data=body,
                                 headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 400
    assert says in (await response.json())["error"]
    # Nothing of the batch was taken.
    assert (await message(client, case["id"], sent["id"]))["delivery"] == "sending"


async def test_reports_need_the_token(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await client.post("/api/channel/reports", json={"reports": [delivery()]}, headers=headers)
        assert response.status == 401


async def test_a_full_batch_of_the_longest_texts_is_taken_and_more_is_413(client):
    batch = [report("delivery", f"bot:{n}", desk_message_id=None, text="好" * 4096, state="sent")
             for n in range(200)]
    assert await send(client, *batch) == (200, {"taken": 0, "ignored": 200})
    too_big = b'{"reports": [' + b" " * REPORTS_MAX_BYTES + b"]}"
    response = await client.post("/api/channel/reports", data=too_big,
                                 headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 413 and "error" in await response.json()


async def picture(client, body: bytes, content_type: str = "image/png", **query):
    params = {"sender_id": SENDER, "channel": "wecom_kf", "msgid": "img-1", **query}
    response = await client.post("/api/channel/attachments", params={k: v for k, v in params.items() if v},
                                 data=body, headers={**AUTH, "Content-Type": content_type})
    return response.status, await response.json()


async def test_a_picture_reaches_the_case_page_for_agents_only(client):
    assert await picture(client, PNG) == (200, {"ignored": True})  # no open case yet
    case = await kf_case(client)
    status, stored = await picture(client, PNG)
    assert status == 201
    assert await picture(client, PNG) == (200, stored)  # the same msgid once
    transcript = (await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json())["transcript"]
    assert [(m["text"], m["attachment_id"]) for m in transcript] == [("[image]", stored["attachment_id"])]

    url = f"/console/attachments/{stored['attachment_id']}"
    assert (await client.get(url)).status == 404  # not logged in: not even that it exists
    await login(client)
    response = await client.get(url)
    assert response.status == 200 and await response.read() == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert (await client.get("/console/attachments/999")).status == 404
    page = await (await client.get(f"/console/cases/{case['id']}")).text()
    assert f'<img class="attachment" src="{url}"' in page


async def test_pictures_that_are_not_what_the_contract_allows(client):
    await kf_case(client)
    assert (await picture(client, PNG, sender_id=""))[0] == 400
    assert (await picture(client, PNG, msgid=""))[0] == 400
    assert (await picture(client, PNG, channel="sms"))[0] == 400
    status, body = await picture(client, b"GIF89a", content_type="text/html")
    assert status == 415 and "image/jpeg" in body["error"]
    status, body = await picture(client, JPEG, content_type="image/png")  # says PNG, is JPEG
    assert status == 415 and "not a image/png" in body["error"]
    assert (await picture(client, b"<svg onload=alert(1)>", content_type="image/gif"))[0] == 415
    status, body = await picture(client, JPEG + bytes(2 * 1024 * 1024), content_type="image/jpeg")
    assert status == 413
    assert (await picture(client, b""))[0] == 400
    # Exactly the limit is fine.
    limit = client.app[SETTINGS].attachment_max_bytes
    assert limit == 2 * 1024 * 1024
    assert (await picture(client, JPEG + bytes(limit - len(JPEG)), content_type="image/jpeg", msgid="big"))[0] == 201
    response = await client.post("/api/channel/attachments", data=PNG, params={
        "sender_id": SENDER, "channel": "wecom_kf", "msgid": "x"}, headers={"Content-Type": "image/png"})
    assert response.status == 401


async def test_the_bots_rating_through_the_api(client):
    rate = {"sender_id": "shop-9", "rating": 5}
    assert (await client.post("/api/outcomes/rating", json=rate, headers=AUTH)).status == 404
    await client.post("/api/outcomes", json={"sender_id": "shop-9", "outcome": "resolved", "fixed_step": "network"},
                      headers=AUTH)
    for bad in ({"sender_id": "shop-9", "rating": 6}, {"sender_id": "shop-9", "rating": "5"},
                {"sender_id": "shop-9", "rating": True}, {"rating": 5}):
        assert (await client.post("/api/outcomes/rating", json=bad, headers=AUTH)).status == 400
    assert (await client.post("/api/outcomes/rating", json=rate, headers=AUTH)).status == 201
    assert (await client.post("/api/outcomes/rating", json=rate, headers=AUTH)).status == 409
    stats = await (await client.get("/api/stats", headers=AUTH)).json()
    assert (stats["bot_rating_average"], stats["bot_ratings"]) == (5.0, 1)


async def test_reply_form_posts_to_a_wecom_held_case_are_refused_with_the_reason(client):
    case = await kf_case(client)
    await send(client, report("session", "s3", state=3, servicer_userid="lisi"))
    await login(client)
    token = csrf_of(await (await client.get(f"/console/cases/{case['id']}")).text())
    response = await client.post(f"/console/cases/{case['id']}/reply", data={"csrf": token, "text": "我来"})
    assert "WeCom client" in await response.text()
    transcript = (await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json())["transcript"]
    assert [m for m in transcript if m["kind"] == "reply"] == []


async def test_a_console_reply_on_a_reporting_channel_is_not_called_sent(client):
    case = await kf_case(client)
    await login(client)
    token = csrf_of(await (await client.get(f"/console/cases/{case['id']}")).text())
    page = await (await client.post(f"/console/cases/{case['id']}/reply", data={"csrf": token, "text": "您好"})).text()
    assert "回复已交给 wecom_kf 渠道发送" in page and "已发送。" not in page and "连不上机器人服务" not in page
    assert "发送中，等待渠道确认" in page

"""``POST /api/channel/reports`` and ``/api/channel/attachments`` as the contract says
(notes/channel_reports_contract.md in the lead's notes; the channel side posts them), the
pictures on the case page, ``POST /api/outcomes/rating``: the desk app under aiohttp's
test client, Rasa's HTTP API as the double of tests/harness/desk_app.py."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from channels.desk_reports import DeskReports
from support_desk.api import RELAY, SETTINGS, STORE
from support_desk.channel_api import REPORTS_MAX_BYTES
from support_desk.channel_reports import prune_reports
from support_desk.schema import channel_reports
from tests.harness.desk_app import AUTH, TOKEN, console_client, csrf_of, login

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


def answer(taken: int = 0, ignored: int = 0, rejected: tuple = ()) -> dict:
    """The desk's answer to a batch: every well-formed report is accepted."""
    return {"accepted": taken + ignored, "rejected": list(rejected), "taken": taken, "ignored": ignored}


async def kf_case(client, sender: str = SENDER) -> dict:
    response = await client.post(
        "/api/escalations", headers=AUTH, json={"sender_id": sender, "channel": "wecom_kf", "ticket": "PX-KF0001", "summary": "报1000"}
    )
    assert response.status == 201
    return await response.json()


async def reply(client, case_id: int, text: str = "请重启终端"):
    response = await client.post(f"/api/escalations/{case_id}/reply", json={"text": text, "agent": "li"}, headers=AUTH)
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
        status, body = await send(
            client,
            report(
                "delivery",
                f"wecom_kf:{sent['id']}:held",
                desk_message_id=sent["id"],
                text="请重启终端",
                state="held",
                reason="48-hour window closed",
            ),
        )
        assert (status, body) == (200, answer(taken=1))
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
    later = report(
        "delivery", f"wecom_kf:{sent['id']}:sent", at=1_764_000_600.0, desk_message_id=sent["id"], text="请重启终端", state="sent"
    )
    assert await send(client, later) == (200, answer(taken=1))
    assert await send(client, later) == (200, answer(ignored=1))
    assert (await message(client, case["id"], sent["id"]))["delivery"] == "delivered"


async def test_a_channel_that_does_not_report_keeps_rasas_word(client):
    response = await client.post("/api/escalations", headers=AUTH, json={"sender_id": "tg-1", "channel": "telegram", "ticket": "PX-TG0001"})
    case = await response.json()
    status, sent = await reply(client, case["id"])
    assert status == 201 and sent["delivery"] == "delivered"


async def test_a_wecom_agent_in_the_wecom_client_holds_the_case_until_the_session_ends(client, rasa):
    case = await kf_case(client)
    assert (await send(client, report("session", "s2", state=2, servicer_userid=None)))[1]["taken"] == 1
    await login(client)
    page = await (await client.get(f"/console/cases/{case['id']}")).text()
    assert "在企业微信待接入池中等待" in page and 'id="reply-form"' in page

    await send(
        client,
        report("session", "s3", at=1_764_000_010.0, state=3, servicer_userid="zhangsan"),
        report("agent_message", "wecom_kf:m5", at=1_764_000_020.0, text="您好，我是张三", servicer_userid="zhangsan", msgid="m5"),
    )
    status, refused = await reply(client, case["id"], "我也来")
    assert status == 409 and "WeCom client" in refused["error"] and "zhangsan" in refused["error"]
    page = await (await client.get(f"/console/cases/{case['id']}")).text()
    assert 'id="reply-form"' not in page
    assert "此工单由企业微信客服 zhangsan 在企业微信客户端中回复，这里不能发送回复。" in page
    assert "WeCom zhangsan" in page and "您好，我是张三" in page
    live = await (await client.get(f"/console/live/cases/{case['id']}")).json()
    assert live["reply_blocked"] and live["session"] == "由企业微信客服 zhangsan 处理"

    # The session ends in WeCom: resolved, and the bot resumes without a word.
    assert (await send(client, report("session", "s4", at=1_764_000_030.0, state=4, servicer_userid="zhangsan")))[1]["taken"] == 1
    assert [e["event"] for e in rasa.events[SENDER]] == ["resume", "action"]
    ended = await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json()
    assert (ended["status"], ended["resolved_by"], ended["resolution_note"]) == ("resolved", "wecom:zhangsan", "ended in WeCom")
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


@pytest.mark.parametrize(
    "body, says",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00binary\x00", "not UTF-8"),
        (b"[]", "must be a JSON object"),
        (json.dumps({"reports": {}}).encode(), "reports must be a list of 1 to 200"),
        (json.dumps({"reports": []}).encode(), "reports must be a list of 1 to 200"),
        (json.dumps({"reports": [delivery(report_id=f"r{n}") for n in range(201)]}).encode(), "1 to 200"),
    ],
)
async def test_a_body_that_is_no_batch_gets_a_clear_400_and_takes_nothing(client, body, says):
    case = await kf_case(client)
    status, sent = await reply(client, case["id"])
    response = await client.post("/api/channel/reports", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 400
    assert says in (await response.json())["error"]
    assert (await message(client, case["id"], sent["id"]))["delivery"] == "sending"


@pytest.mark.parametrize(
    "bad, says",
    [
        ("delivery", "a report must be an object"),
        (delivery(kind="typing"), "kind must be one of"),
        (delivery(channel="sms"), "channel must be one of"),
        (delivery(report_id=""), "report_id must not be empty"),
        (delivery(report_id="x" * 129), "report_id is longer than 128"),
        (delivery(sender_id=7), "sender_id is required and must be a string"),
        (delivery(at="yesterday"), "at must be unix seconds"),
        (delivery(at=True), "at must be unix seconds"),
        (delivery(at=float("nan")), "at must be unix seconds"),
        (delivery(desk_message_id="5"), "desk_message_id must be a positive"),
        (delivery(desk_message_id=True), "desk_message_id must be a positive"),
        (delivery(state="read"), "state must be one of sent, held"),
        (delivery(state="held"), "reason is required"),
        (delivery(text="好" * 4097), "text is longer than 4096"),
        (report("agent_message", "a", servicer_userid="zhangsan", msgid="m"), "text is required"),
        (report("session", "s", state="3"), "state must be an integer from 0 to 4"),
        (report("session", "s", state=5), "state must be an integer from 0 to 4"),
    ],
)
async def test_a_malformed_report_is_rejected_alone_and_its_batch_is_taken(client, bad, says):
    case = await kf_case(client)
    status, sent = await reply(client, case["id"])
    good = report("delivery", f"wecom_kf:{sent['id']}:sent", desk_message_id=sent["id"], text="请重启终端", state="sent")
    # json.dumps writes NaN as the bare token NaN, which Python's JSON reader (the desk's) takes.
    response = await client.post(
        "/api/channel/reports", data=json.dumps({"reports": [bad, good]}), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 200
    body = await response.json()
    [rejected] = body.pop("rejected")
    assert rejected["index"] == 0 and says in rejected["error"]
    assert body == {"accepted": 1, "taken": 1, "ignored": 0}
    assert (await message(client, case["id"], sent["id"]))["delivery"] == "delivered"


async def test_a_wecom_agent_message_without_the_servicer_is_kept(client):
    case = await kf_case(client)
    status, body = await send(
        client,
        report("agent_message", "wecom_kf:m7:agent", text="稍等，我查一下", servicer_userid="", msgid="m7"),
        report("agent_message", "wecom_kf:m8:agent", text="查到了", msgid="m8"),
    )
    assert (status, body) == (200, answer(taken=2))
    transcript = (await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json())["transcript"]
    assert [(m["text"], m["author"]) for m in transcript] == [("稍等，我查一下", "WeCom"), ("查到了", "WeCom")]


async def test_reports_need_the_token(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await client.post("/api/channel/reports", json={"reports": [delivery()]}, headers=headers)
        assert response.status == 401


async def test_a_full_batch_of_the_longest_texts_is_taken_and_more_is_413(client):
    batch = [report("delivery", f"bot:{n}", desk_message_id=None, text="好" * 4096, state="sent") for n in range(200)]
    assert await send(client, *batch) == (200, answer(ignored=200))
    too_big = b'{"reports": [' + b" " * REPORTS_MAX_BYTES + b"]}"
    response = await client.post("/api/channel/reports", data=too_big, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 413 and "error" in await response.json()


async def picture(client, body: bytes, content_type: str = "image/png", **query):
    params = {"sender_id": SENDER, "channel": "wecom_kf", "msgid": "img-1", **query}
    response = await client.post(
        "/api/channel/attachments", params={k: v for k, v in params.items() if v}, data=body, headers={**AUTH, "Content-Type": content_type}
    )
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
    response = await client.post(
        "/api/channel/attachments",
        data=PNG,
        params={"sender_id": SENDER, "channel": "wecom_kf", "msgid": "x"},
        headers={"Content-Type": "image/png"},
    )
    assert response.status == 401


async def test_the_bots_rating_through_the_api(client):
    rate = {"sender_id": "shop-9", "rating": 5}
    assert (await client.post("/api/outcomes/rating", json=rate, headers=AUTH)).status == 404
    await client.post("/api/outcomes", json={"sender_id": "shop-9", "outcome": "resolved", "fixed_step": "network"}, headers=AUTH)
    for bad in (
        {"sender_id": "shop-9", "rating": 6},
        {"sender_id": "shop-9", "rating": "5"},
        {"sender_id": "shop-9", "rating": True},
        {"rating": 5},
    ):
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


async def test_one_bad_report_costs_the_channel_none_of_the_good_ones(client, caplog):
    """The channel's queue against the real desk: before, the desk refused the whole batch
    for one bad report and the poster dropped it all."""
    case = await kf_case(client)
    _, first = await reply(client, case["id"], "第一条")
    _, second = await reply(client, case["id"], "第二条")
    reports = DeskReports(str(client.make_url("")), TOKEN, "wecom_kf")
    reports.delivery(f"wecom_kf:{first['id']}:sent", SENDER, "第一条", first["id"])
    reports.poster.put({**report("delivery", "wecom_kf:bad:sent", desk_message_id=second["id"], text="?"), "state": "read"})
    reports.agent_message("m9", SENDER, "我是企业微信客服", "")
    reports.delivery(f"wecom_kf:{second['id']}:held1", SENDER, "第二条", second["id"], reason="48-hour window closed")
    with caplog.at_level(logging.ERROR, logger="rasa_server.desk_post"):
        await reports.close()
    assert not reports.poster.pending and reports.poster.rejected == 1
    [logged] = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert "wecom_kf:bad:sent" in logged and "state must be one of sent, held" in logged
    assert (await message(client, case["id"], first["id"]))["delivery"] == "delivered"
    assert (await message(client, case["id"], second["id"]))["delivery"] == "held"
    transcript = (await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json())["transcript"]
    assert [m["text"] for m in transcript if m["kind"] == "wecom_agent"] == ["我是企业微信客服"]


async def test_report_ids_past_the_retention_are_pruned_and_the_console_keeps_the_state(client):
    store = client.app[STORE]
    case = await kf_case(client)
    _, sent = await reply(client, case["id"])
    held = report(
        "delivery",
        f"wecom_kf:{sent['id']}:held1",
        desk_message_id=sent["id"],
        text="请重启终端",
        state="held",
        reason="48-hour window closed",
    )
    assert await send(client, held) == (200, answer(taken=1))
    retention = timedelta(days=client.app[SETTINGS].report_retention_days)
    assert retention == timedelta(days=14)
    later = datetime.now(timezone.utc) + retention + timedelta(minutes=1)
    assert await prune_reports(store, retention, now=later - timedelta(minutes=2)) == 0  # not yet old enough
    assert await prune_reports(store, retention, now=later) == 1
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(channel_reports))).scalar() == 0
    shown = await message(client, case["id"], sent["id"])
    assert (shown["delivery"], shown["delivery_reason"]) == ("held", "48-hour window closed")


async def test_the_first_batch_a_desk_process_takes_prunes_old_report_ids(client):
    store = client.app[STORE]
    old = datetime.now(timezone.utc) - timedelta(days=15)
    async with store.engine.begin() as conn:
        await conn.execute(
            channel_reports.insert().values(report_id="old", kind="session", sender_id=SENDER, channel="wecom_kf", received_at=old)
        )
    case = await kf_case(client)
    assert await send(client, report("session", "s2", state=2, servicer_userid=None)) == (200, answer(taken=1))
    async with store.engine.connect() as conn:
        kept = (await conn.execute(sa.select(channel_reports.c.report_id))).scalars().all()
    assert kept == ["s2"]
    assert (await (await client.get(f"/api/escalations/{case['id']}", headers=AUTH)).json())["platform_session"] == "pool"

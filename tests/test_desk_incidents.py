"""The incident board's store on SQLite and on a real PostgreSQL server: linking merchants
once, proposals from reports, closing once, notices taken at most once, channel reports."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from support_desk.channel_reports import Report as ChannelReport, take_reports
from support_desk.incident_input import IncidentText, parse_scope
from support_desk.incidents import IncidentBoard, Merchant, Report
from support_desk.store import Conflict, NotFound

OVER = {"zh": "已恢复", "en": "It is back"}


@pytest.fixture
def board(store):  # noqa: F811 - the imported fixture
    return IncidentBoard(store)


def text(scope=None, starts_at=None, expected_end=None) -> IncidentText:
    return IncidentText(parse_scope(scope), "网关故障", "Gateway down", starts_at, expected_end)


def merchant(sender: str, **changes) -> Merchant:
    base = dict(sender_id=sender, channel="socketio", language="zh", wants_person=False, subscribed=False)
    return Merchant(**{**base, **changes})


def report(sender: str, region="4403", model=None, channel=None, kind="reported") -> Report:
    # A channel of its own unless given: only the dimension under test groups the reports.
    return Report(sender_id=sender, channel=channel or f"rest-{sender}", language="zh", kind=kind, region=region, terminal_model=model)


async def test_a_merchant_is_linked_once_and_only_ever_gains_wants_person(board, store):  # noqa: F811
    incident = await board.post(text(), "api", 10)
    assert incident["ticket"].startswith("INC-") and incident["status"] == "active"
    case = await store.get_escalation(incident["escalation_id"])
    assert case["ticket"] == incident["ticket"] and case["status"] == "open"
    first, created = await board.link(incident["id"], merchant("shop-1"))
    assert created and first["ticket"] == incident["ticket"]
    again, created = await board.link(
        incident["id"], merchant("shop-1", wants_person=True, contact="13812345678", summary="卡号 4111111111111111")
    )
    assert not created and again["merchant"]["wants_person"] is True
    assert again["merchant"]["summary"] == "卡号 411111******1111"
    later, _ = await board.link(incident["id"], merchant("shop-1", wants_person=False, language="en"))
    assert later["merchant"]["wants_person"] is True and later["merchant"]["language"] == "en"
    assert later["merchant"]["contact"] == "13812345678"  # not given again: kept
    assert (await board.get(incident["id"]))["merchants"] == 1


async def test_only_an_active_incident_takes_merchants(board):
    now = datetime.now(timezone.utc)
    future = await board.post(text(starts_at=now + timedelta(hours=1)), "api", 10)
    with pytest.raises(NotFound):
        await board.link(future["id"], merchant("shop-1"))
    with pytest.raises(NotFound):
        await board.link(999, merchant("shop-1"))


async def test_reports_past_the_threshold_make_one_proposal_with_its_evidence(board):
    for sender in ("a", "b", "c"):
        assert await board.report(report(sender), threshold=3, window_minutes=10) == []
    assert await board.report(report("a"), 3, 10) == []  # the same merchant again: still 3
    assert await board.report(report("z", region="3101"), 3, 10) == []  # elsewhere: not counted
    raised = await board.report(report("d", kind="server_status_failed"), 3, 10)
    assert len(raised) == 1
    assert await board.report(report("e"), 3, 10) == raised  # more evidence, the same proposal
    [proposal] = await board.proposals()
    assert proposal["status"] == "proposed" and proposal["scope"]["regions"] == ["4403"]
    evidence = proposal["evidence"]
    assert (evidence["key"], evidence["count"]) == ("regions:4403", 5)
    assert evidence["first_report_at"] <= evidence["last_report_at"]
    assert await board.list() == []  # proposals are not told to merchants


async def test_similar_server_status_answers_from_anywhere_make_one_proposal(board):
    # Four shops in four regions, on their own channels: no region, model or channel
    # crosses the threshold, but they all saw the same message after the server step.
    said = ["还是不行，屏幕显示连接主机超时 10:05", "显示：连接主机超时", "连接主机超时！！", "我的pos机还是显示 连接主机超时了"]
    for n, (region, answer) in enumerate(zip(["31", "11", "33"], said[:3])):
        failed = Report(sender_id=f"s{n}", channel=f"rest-{n}", language="zh", kind="server_status_failed", region=region, answer=answer)
        assert await board.report(failed, 3, 10) == []
    # Filler alone, or the same words in a plain report, are no evidence of the message.
    assert (
        await board.report(Report(sender_id="f", channel="rest-f", language="zh", kind="server_status_failed", answer="还是不行"), 3, 10)
        == []
    )
    assert await board.report(Report(sender_id="r", channel="rest-r", language="zh", kind="reported", answer=said[0]), 3, 10) == []
    fourth = Report(sender_id="s3", channel="rest-3", language="en", kind="server_status_failed", region="44", answer=said[3])
    [proposal_id] = await board.report(fourth, 3, 10)
    proposal = await board.get(proposal_id)
    assert proposal["evidence"]["key"] == "answers:连接主机超时" and proposal["evidence"]["count"] == 4
    assert proposal["scope"] == {d: [] for d in proposal["scope"]}  # everyone, until the operator says where
    assert proposal["evidence"]["answers"] == list(reversed(said))  # newest first, as they said it
    # Confirmed for two regions: the reporters there are linked, and no other proposal is left.
    confirmed = await board.confirm(proposal_id, text(scope={"regions": ["31", "44"]}), "zhao", 3)
    assert confirmed["status"] == "active" and confirmed["merchants"] == 2
    assert await board.proposals() == []


async def test_confirming_links_those_reporting_and_stops_proposing(board):
    for sender in ("a", "b", "c"):
        [proposal_id] = (await board.report(report(sender, model="pax_a920", region=None), 2, 10)) or [None]
    confirmed = await board.confirm(proposal_id, text(), "zhao", 2)
    assert confirmed["status"] == "active" and confirmed["merchants"] == 3
    assert confirmed["scope"]["terminal_models"] == ["pax_a920"] and confirmed["ticket"].startswith("INC-")
    assert confirmed["minutes_to_post"] is not None
    assert await board.report(report("d", model="pax_a920", region=None), 2, 10) == []  # covered
    with pytest.raises(Conflict):
        await board.confirm(proposal_id, text(), "zhao", 2)


async def test_confirming_one_proposal_withdraws_another_its_merchants_made(board):
    # Four widget shops of Shenzhen and one of Beijing: a city proposal and a widget one.
    for sender in ("a", "b", "c", "d"):
        await board.report(report(sender, channel="socketio"), 3, 10)
    await board.report(report("beijing-1", region="11", channel="socketio"), 3, 10)
    keys = {p["evidence"]["key"]: p["id"] for p in await board.proposals()}
    assert set(keys) == {"regions:4403", "channels:socketio"}
    confirmed = await board.confirm(keys["regions:4403"], text(), "zhao", 3)
    assert confirmed["merchants"] == 4
    # The widget's evidence less the linked four is one shop: no outage of the widget.
    assert await board.proposals() == []
    assert (await board.get(keys["channels:socketio"]))["status"] == "withdrawn"
    # Reported again, not blocked as a dismissed one is, but the linked shops no longer count.
    assert await board.report(report("beijing-2", region="11", channel="socketio"), 3, 10) == []
    assert await board.report(report("a", channel="socketio"), 3, 10) == []
    for sender in ("beijing-3", "beijing-4"):
        await board.report(report(sender, region="11", channel="socketio"), 3, 10)
    # Four shops outside the incident now: the widget is proposed anew (and Beijing).
    assert sorted(p["evidence"]["key"] for p in await board.proposals()) == ["channels:socketio", "regions:11"]


async def test_a_dismissed_proposal_is_not_raised_again_within_the_window(board):
    for sender in ("a", "b"):
        raised = await board.report(report(sender, channel="wecom_kf", region=None), 1, 10)
    await board.dismiss(raised[0], "zhao")
    assert await board.report(report("c", channel="wecom_kf", region=None), 1, 10) == []
    assert await board.proposals() == []
    with pytest.raises(Conflict):
        await board.dismiss(raised[0], "zhao")


async def test_closing_plans_one_notice_per_merchant_once(board, store):  # noqa: F811
    incident = await board.post(text(), "api", 10)
    await board.link(incident["id"], merchant("shop-zh"))
    await board.link(incident["id"], merchant("shop-en", language="en", subscribed=True))
    closed, planned = await board.close(incident["id"], "gateway back", "zhao", OVER)
    assert planned == 2 and closed["status"] == "resolved" and closed["ended_at"]
    assert (await store.get_escalation(incident["escalation_id"]))["status"] == "resolved"
    again, planned_again = await board.close(incident["id"], "again", "zhao", OVER)
    assert planned_again == 0 and again["close_note"] == "gateway back"
    due = await board.due_notices(datetime.now(timezone.utc))
    assert sorted((n.sender_id, n.text) for n in due) == [("shop-en", "It is back"), ("shop-zh", "已恢复")]

    # Taken at most once: a second claim of the same notice (another round, another desk) fails.
    assert await board.start_sending(due[0]) and not await board.start_sending(due[0])
    await board.sent(due[0])
    assert (await board.get(incident["id"]))["all_told_at"] is None
    assert await board.start_sending(due[1])
    await board.sent(due[1])
    told = await board.get(incident["id"])
    assert told["notices"] == {"reached": 2, "not_reached": 0, "waiting": 0, "not_planned": 0}
    assert told["all_told_at"] and told["seconds_to_all_told"] is not None
    assert await board.due_notices(datetime.now(timezone.utc)) == []


async def test_a_notice_left_sending_is_due_again_only_after_the_recheck_time(board):
    incident = await board.post(text(), "api", 10)
    await board.link(incident["id"], merchant("shop-1"))
    await board.close(incident["id"], "", "api", OVER)
    [notice] = await board.due_notices(datetime.now(timezone.utc))
    assert await board.start_sending(notice)  # ... and the desk stops here
    assert await board.due_notices(datetime.now(timezone.utc) - timedelta(seconds=15)) == []
    [again] = await board.due_notices(datetime.now(timezone.utc) + timedelta(seconds=1))
    assert again.state == "sending" and again.message_id == notice.message_id
    assert await board.start_sending(again) and not await board.start_sending(again)


async def test_a_held_report_lists_the_merchant_as_not_reached(board):
    incident = await board.post(text(), "api", 10)
    await board.link(incident["id"], merchant("wm-1", channel="wechat"))
    await board.close(incident["id"], "", "api", OVER)
    [notice] = await board.due_notices(datetime.now(timezone.utc))
    await board.start_sending(notice)
    await board.sent(notice)
    held = ChannelReport(
        kind="delivery",
        report_id="r-1",
        sender_id="wm-1",
        channel="wechat",
        at=1_800_000_000.0,
        desk_message_id=notice.message_id,
        text="已恢复",
        state="held",
        reason="48h window closed",
    )
    other = ChannelReport(
        kind="delivery",
        report_id="r-2",
        sender_id="someone-else",
        channel="wechat",
        at=1_800_000_001.0,
        desk_message_id=notice.message_id,
        text="x",
        state="sent",
    )
    taken = await take_reports(board.store, [held, other])
    assert (taken.taken, taken.ignored) == (1, 1)
    [linked] = (await board.get(incident["id"]))["linked"]
    assert (linked["notice_state"], linked["notice_reason"]) == ("held", "48h window closed")
    assert (await board.get(incident["id"]))["notices"]["not_reached"] == 1


async def test_stats_and_the_audit_trail(board, store):  # noqa: F811
    from support_desk.audit import audit_trail

    incident = await board.post(text(), "li", 10)
    await board.link(incident["id"], merchant("shop-1"))
    await board.link(incident["id"], merchant("shop-2"))
    await board.close(incident["id"], "", "zhao", OVER)
    stats = await board.stats()
    assert stats["incidents"] == 1 and stats["merchants_per_incident"] == 2
    actions = [(a["actor"], a["action"], a["target"]) for a in await audit_trail(store)]
    assert actions == [("zhao", "incident.close", f"incident:{incident['id']}"), ("li", "incident.post", f"incident:{incident['id']}")]

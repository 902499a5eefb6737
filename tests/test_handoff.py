"""Handoff form, escalation through the outbox, ticket status — against the real desk."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiohttp.test_utils import TestServer
from rasa_sdk.events import ConversationPaused, SlotSet

from actions import handoff, incident_links, incident_reports, incidents
from actions.desk_client import DeskClient
from actions.handoff import (
    ActionEscalate,
    ActionTicketStatus,
    ValidateHandoffForm,
    diagnostics_results,
    transcript,
)
from actions.outbox import Outbox
from actions.settings import load_settings
from support_desk.app import create_app
from tests.harness.actions import responses
from tests.harness.desk_app import TOKEN, desk_settings

HANDOFF_SLOTS = ["merchant_ref", "contact", "problem_summary"]
EVENTS = [
    {"event": "user", "text": "pos机报1000咋整 卡号4111111111111111", "timestamp": 1764036000.0},
    {"event": "bot", "text": "出现1000，按这四步排查", "timestamp": 1764036001.0},
    {"event": "slot", "name": "network_ok", "value": False},
]


class Desk:
    """The real support desk app on 127.0.0.1 with a temporary SQLite database."""

    def __init__(self, tmp_path, port=None):
        self.app = create_app(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}"))
        self.server = TestServer(self.app, host="127.0.0.1", port=port)

    async def __aenter__(self):
        await self.server.start_server()
        return self

    async def __aexit__(self, *exc):
        await self.server.close()

    @property
    def url(self):
        return str(self.server.make_url("")).rstrip("/")

    async def escalations(self):
        from support_desk.api import STORE

        return await self.app[STORE].list_escalations()


@pytest.fixture
def use_desk(monkeypatch, tmp_path):
    """Point the actions at a desk URL with a test outbox file."""

    def configure(url):
        settings = replace(
            load_settings(environ={}),
            desk_url=url,
            incident_board_url=f"{url}/api/incidents",
            desk_api_token=TOKEN,
            outbox_file=tmp_path / "outbox.sqlite",
            desk_timeout_seconds=2.0,
            outbox_retry_seconds=3600,
        )
        # action_escalate first asks the board for an incident covering the merchant.
        for module in (handoff, incidents, incident_links, incident_reports):
            monkeypatch.setattr(module, "current_settings", lambda: settings)
        return settings

    return configure


def handoff_tracker(make_tracker, **slots):
    return make_tracker(
        slots={
            "network_ok": False,
            "restart_ok": False,
            "contact": "13812345678",
            "problem_summary": "刷卡都报1000",
            "merchant_id": "898310048160123",
            **slots,
        },
        events=EVENTS,
    )


async def test_merchant_reference_is_skipped_when_known(make_tracker, dispatcher, domain):
    form = ValidateHandoffForm()
    assert await form.required_slots(HANDOFF_SLOTS, dispatcher, make_tracker(), domain) == HANDOFF_SLOTS
    known = make_tracker(slots={"terminal_serial": "0820ABC12345"})
    assert await form.required_slots(HANDOFF_SLOTS, dispatcher, known, domain) == HANDOFF_SLOTS[1:]


@pytest.mark.parametrize(
    "typed, slots",
    [
        ("商户号898310048160123", {"merchant_id": "898310048160123"}),
        ("终端号20481234", {"terminal_id": "20481234"}),
        ("SN: 0820ABC12345", {"terminal_serial": "0820ABC12345"}),
        ("unknown", {}),
    ],
)
def test_merchant_reference_is_parsed(make_tracker, dispatcher, domain, typed, slots):
    result = ValidateHandoffForm().validate_merchant_ref(typed, dispatcher, make_tracker(), domain)
    assert result == {"merchant_ref": typed, **slots}
    assert dispatcher.messages == []


@pytest.mark.parametrize("typed", ["hello", "", None, 12345])
def test_bad_merchant_reference_is_asked_again(make_tracker, dispatcher, domain, typed):
    result = ValidateHandoffForm().validate_merchant_ref(typed, dispatcher, make_tracker(), domain)
    assert result == {"merchant_ref": None}
    assert responses(dispatcher) == ["utter_merchant_ref_invalid"]


@pytest.mark.parametrize(
    "typed, kept",
    [
        ("13812345678", "13812345678"),
        ("+86 139-2234-5567", "+86 139-2234-5567"),
        ("mail me at li@shop.cn please", "li@shop.cn"),
        ("tomorrow", None),
        ("12345", None),
        ("1" * 60, None),
    ],
)
def test_contact_validation(make_tracker, dispatcher, domain, typed, kept):
    result = ValidateHandoffForm().validate_contact(typed, dispatcher, make_tracker(), domain)
    assert result == {"contact": kept}
    assert responses(dispatcher) == ([] if kept else ["utter_contact_invalid"])


@pytest.mark.parametrize(
    "typed, kept",
    [
        ("所有刷卡都报1000 卡号4111111111111111", "所有刷卡都报1000 卡号411111******1111"),
        ("x", None),
        ("a" * 301, None),
    ],
)
def test_summary_validation(make_tracker, dispatcher, domain, typed, kept):
    result = ValidateHandoffForm().validate_problem_summary(typed, dispatcher, make_tracker(), domain)
    assert result == {"problem_summary": kept}


def test_transcript_and_diagnostics_from_the_tracker(make_tracker):
    tracker = make_tracker(slots={"network_ok": False, "restart_ok": True}, events=EVENTS)
    assert diagnostics_results(tracker) == [
        {"step": "network", "outcome": "not_fixed"},
        {"step": "restart", "outcome": "fixed"},
    ]
    current = make_tracker(slots={"network_ok": False, "restart_ok": False, "server_ok": False, "software_status": "latest"})
    assert diagnostics_results(current)[-1] == {"step": "software", "outcome": "already_latest"}
    lines = transcript(tracker)
    assert [(line["role"], line["text"]) for line in lines] == [
        ("user", "pos机报1000咋整 卡号411111******1111"),
        ("bot", "出现1000，按这四步排查"),
    ]
    assert lines[0]["source_ts"] == 1764036000.0 and "source_ts" not in lines[1]


async def test_escalation_reaches_the_desk_and_pauses_the_bot(make_tracker, dispatcher, domain, use_desk, tmp_path):
    async with Desk(tmp_path) as desk:
        use_desk(desk.url)
        events = await ActionEscalate().run(dispatcher, handoff_tracker(make_tracker), domain)
        [case] = await desk.escalations()
    ticket = events[0]["value"]
    assert events == [
        SlotSet("ticket", ticket),
        SlotSet("diagnostics_outcome", "escalated"),
        SlotSet("needs_person", False),
        ConversationPaused(),
    ]
    assert case["ticket"] == ticket and case["merchant_id"] == "898310048160123"
    assert case["priority"] == "normal"  # the checks were not finished
    assert case["diagnostics"] == [
        {"step": "network", "outcome": "not_fixed"},
        {"step": "restart", "outcome": "not_fixed"},
    ]
    [message] = dispatcher.messages
    assert message["response"] == "utter_escalated" and message["ticket"] == ticket
    assert len(message["reply_by"]) == len("11-25 10:30")
    assert Outbox(tmp_path / "outbox.sqlite").pending() == []


async def test_the_case_records_the_code_the_merchant_named(make_tracker, dispatcher, domain, use_desk, tmp_path):
    async with Desk(tmp_path) as desk:
        use_desk(desk.url)
        await ActionEscalate().run(dispatcher, handoff_tracker(make_tracker, error_code="1001"), domain)
        await ActionEscalate().run(dispatcher, handoff_tracker(make_tracker), domain)
        cases = await desk.escalations()
    # Another code than 1000 is recorded as such; a conversation that named none is about 1000.
    assert sorted(case["error_code"] for case in cases) == ["1000", "1001"]


async def test_desk_down_keeps_the_escalation_and_delivers_it_once(make_tracker, dispatcher, domain, use_desk, tmp_path, unused_tcp_port):
    settings = use_desk(f"http://127.0.0.1:{unused_tcp_port}")
    events = await ActionEscalate().run(dispatcher, handoff_tracker(make_tracker), domain)
    ticket = events[0]["value"]
    assert responses(dispatcher) == ["utter_escalated_queued"]
    assert dispatcher.messages[0]["ticket"] == ticket
    outbox = Outbox(settings.outbox_file)
    assert [p["ticket"] for p in outbox.pending()] == [ticket]

    async with Desk(tmp_path, port=unused_tcp_port) as desk:
        delivered = await outbox.flush(DeskClient(settings))
        assert list(delivered) == [ticket]
        assert await outbox.flush(DeskClient(settings)) == {}
        # The same escalation sent again (a lost confirmation) stays one case.
        await DeskClient(settings).create_escalation({**delivered[ticket], "transcript": []})
        cases = await desk.escalations()
    assert [c["ticket"] for c in cases] == [ticket]
    assert outbox.pending() == []


async def test_escalation_the_desk_refuses_is_kept_for_an_operator(use_desk, tmp_path):
    async with Desk(tmp_path) as desk:
        settings = use_desk(desk.url)
        outbox = Outbox(settings.outbox_file)
        outbox.put({"ticket": "PX-BAD234", "sender_id": "", "language": "zh"})
        assert await outbox.flush(DeskClient(settings)) == {}
    assert outbox.pending() == []
    [kept] = outbox.rejected()
    assert kept["ticket"] == "PX-BAD234" and "400" in kept["error"]


async def test_ticket_status_by_number_and_by_conversation(make_tracker, dispatcher, domain, use_desk, tmp_path):
    async with Desk(tmp_path) as desk:
        use_desk(desk.url)
        events = await ActionEscalate().run(dispatcher, handoff_tracker(make_tracker), domain)
        ticket = events[0]["value"]
        dispatcher.messages.clear()

        asked = make_tracker(entities=[{"entity": "ticket", "value": ticket.lower()}])
        assert await ActionTicketStatus().run(dispatcher, asked, domain) == [SlotSet("ticket", ticket)]
        mine = make_tracker()  # same sender id, no ticket given
        await ActionTicketStatus().run(dispatcher, mine, domain)
        other = make_tracker(entities=[{"entity": "ticket", "value": "PX-ZZZZZZ"}])
        await ActionTicketStatus().run(dispatcher, other, domain)
    assert responses(dispatcher) == [
        "utter_ticket_status_open",
        "utter_ticket_status_open",
        "utter_ticket_not_found",
    ]
    assert dispatcher.messages[0]["ticket"] == ticket


async def test_the_outage_case_ticket_says_the_outage_is_on_until_it_closes(make_tracker, dispatcher, domain, use_desk, tmp_path):
    from support_desk.incident_api import BOARD
    from support_desk.incident_input import IncidentText, parse_scope

    async with Desk(tmp_path) as desk:
        settings = use_desk(desk.url)
        board = desk.app[BOARD]
        incident = await board.post(IncidentText(parse_scope(None), "网关故障", "Gateway down", None, None), "ops", 10)
        linked = await DeskClient(settings).link_incident(
            incident["id"], {"sender_id": "default", "channel": "rest", "language": "zh", "wants_person": True}
        )
        ticket = linked["ticket"]
        assert ticket.startswith("INC-")
        # Asked by its number, or as "my ticket" by a merchant holding it: the outage is on.
        by_number = make_tracker(entities=[{"entity": "ticket", "value": ticket.lower()}])
        assert await ActionTicketStatus().run(dispatcher, by_number, domain) == [SlotSet("incident_ticket", ticket)]
        await ActionTicketStatus().run(dispatcher, make_tracker(slots={"incident_ticket": ticket}), domain)
        await board.close(incident["id"], "网关已恢复", "ops", {"zh": "已恢复", "en": "It is back"})
        await ActionTicketStatus().run(dispatcher, make_tracker(slots={"incident_ticket": ticket}), domain)
    assert responses(dispatcher) == ["utter_ticket_status_incident", "utter_ticket_status_incident", "utter_ticket_status_resolved"]
    assert dispatcher.messages[0]["ticket"] == ticket and dispatcher.messages[2]["note"] == "网关已恢复"


async def test_ticket_status_when_the_desk_is_away(make_tracker, dispatcher, domain, use_desk, unused_tcp_port):
    use_desk(f"http://127.0.0.1:{unused_tcp_port}")
    await ActionTicketStatus().run(dispatcher, make_tracker(), domain)
    assert responses(dispatcher) == ["utter_ticket_unchecked"]
    dispatcher.messages.clear()
    # A ticket still in the outbox is known to be waiting.
    await ActionEscalate().run(dispatcher, handoff_tracker(make_tracker), domain)
    dispatcher.messages.clear()
    await ActionTicketStatus().run(dispatcher, make_tracker(), domain)
    assert responses(dispatcher) == ["utter_ticket_status_open"]


@pytest.mark.parametrize("channel, cue", [("wecom_kf", [{"wecom_kf": "handoff"}]), ("rest", []), ("wechat", [])])
async def test_only_a_wecom_kf_conversation_gets_the_handoff_cue(make_tracker, domain, use_desk, unused_tcp_port, channel, cue):
    from rasa_sdk.executor import CollectingDispatcher

    use_desk(f"http://127.0.0.1:{unused_tcp_port}")  # the desk being down changes nothing here
    tracker = make_tracker(events=EVENTS + [{"event": "user", "text": "转人工", "input_channel": channel}])
    dispatcher = CollectingDispatcher()
    await ActionEscalate().run(dispatcher, tracker, domain)
    assert [m["custom"] for m in dispatcher.messages if m.get("custom")] == cue
    assert responses(dispatcher)[0] == "utter_escalated_queued"


async def test_the_contact_links_merchant_number_is_known_without_asking(make_tracker, dispatcher, domain):
    from actions.handoff import scene_merchant_id

    came = [
        {"event": "user", "text": "你好", "metadata": {"scene_param": "898310048160123"}},
        {"event": "user", "text": "报1000", "metadata": {}},
    ]
    tracker = make_tracker(events=came)
    assert scene_merchant_id(tracker) == "898310048160123"
    assert await ValidateHandoffForm().required_slots(HANDOFF_SLOTS, dispatcher, tracker, domain) == HANDOFF_SLOTS[1:]
    assert scene_merchant_id(make_tracker(events=[{"event": "user", "metadata": {"scene_param": "poster-3"}}])) is None

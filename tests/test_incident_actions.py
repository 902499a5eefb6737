"""The bot side of an incident against a desk double that enforces the contract
(tests/incident_desk.py): told before any check, the region question, subscribing,
linking instead of escalating, the evidence reports, the server-status step."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Optional

import pytest
from rasa.core.nlg.interpolator import interpolate_text
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import diagnostics, handoff, incident_links, incident_reports, incidents
from actions.diagnostics import ActionAskServerOk, ValidateDiagnosticsForm
from actions.handoff import ActionEscalate, ValidateHandoffForm
from actions.incident_links import ActionSubscribeIncident
from actions.incident_reports import reports_in_flight
from actions.incidents import ActionCheckIncident, ValidateRegionForm
from actions.settings import load_settings
from tests.harness.actions import responses
from tests.incident_desk import TOKEN, IncidentDesk, incident

SHENZHEN_NUMBER = "898440312345678"
SHANGHAI_NUMBER = "898310048160123"


@pytest.fixture
async def desk(monkeypatch, tmp_path):
    """The desk double, with every action module pointed at it."""
    double = IncidentDesk()
    url = await double.start()
    settings = replace(
        load_settings(environ={}),
        desk_url=url,
        incident_board_url=f"{url}/api/incidents",
        upstream_status_url=None,
        desk_api_token=TOKEN,
        outbox_file=tmp_path / "outbox.sqlite",
        desk_timeout_seconds=10.0,
        status_timeout_seconds=10.0,
        outbox_retry_seconds=3600,
    )
    for module in (diagnostics, handoff, incidents, incident_links, incident_reports):
        monkeypatch.setattr(module, "current_settings", lambda: settings)
    # Timeouts long enough for a loaded machine: these tests are about answers, not speed.
    monkeypatch.setattr(incident_reports, "REPORT_TIMEOUT_SECONDS", 10.0)
    yield double
    await reports_in_flight()
    await double.server.close()


@pytest.fixture
def chat(make_tracker):
    """A tracker of a merchant on a channel, after they reported error 1000."""

    def build(slots: Optional[Dict[str, Any]] = None, channel: str = "socketio", text: str = "pos机报1000", **kw):
        events: List[Dict[str, Any]] = [{"event": "user", "text": text, "input_channel": channel}]
        return make_tracker(slots=slots, text=text, events=events, **kw)

    return build


async def reported(desk: IncidentDesk) -> List[Dict[str, Any]]:
    await reports_in_flight()
    return desk.reports


# --- told before any check --------------------------------------------------------


async def test_an_incident_for_everyone_is_told_first_with_what_to_do(desk, chat, dispatcher, domain):
    desk.incidents = [incident()]
    events = await ActionCheckIncident().run(dispatcher, chat(), domain)
    assert events == [
        SlotSet("incident_id", 7),
        SlotSet("incident_ticket", "INC-0007"),
        SlotSet("incident_told", 7),
        SlotSet("incident_match", "told"),
    ]
    [message] = dispatcher.messages
    assert message["response"] == "utter_incident_active"
    assert message["incident"] == "银联网关故障，刷卡暂时失败。"
    assert message["expected_end"] == "11-25 12:00"
    # The four choices are the domain response's buttons.
    buttons = domain["responses"]["utter_incident_active"][1]["buttons"]
    assert [b["payload"] for b in buttons] == ["/subscribe_incident", "/start_diagnostics", "/request_human", "/not_the_incident"]
    for variation in domain["responses"]["utter_incident_active"]:
        assert "{incident}" in variation["text"] and "{expected_end}" in variation["text"]
    [report] = await reported(desk)
    assert report == {"sender_id": "merchant-1", "channel": "socketio", "language": "zh", "kind": "reported", "answer": "pos机报1000"}


async def test_english_and_no_end_time(desk, chat, dispatcher, domain):
    desk.incidents = [incident(expected_end=None)]
    await ActionCheckIncident().run(dispatcher, chat(slots={"language": "en"}), domain)
    [message] = dispatcher.messages
    assert message["response"] == "utter_incident_active_open"
    assert message["incident"] == "The card gateway is down."


async def test_no_incident_lets_the_checks_start_and_still_reports(desk, chat, dispatcher, domain):
    events = await ActionCheckIncident().run(dispatcher, chat(slots={"merchant_id": SHENZHEN_NUMBER}), domain)
    assert events == [SlotSet("incident_id", None), SlotSet("incident_ticket", None), SlotSet("incident_match", "clear")]
    assert dispatcher.messages == []
    [report] = await reported(desk)
    assert report["kind"] == "reported" and report["region"] == "4403"
    assert report["merchant_id"] == SHENZHEN_NUMBER


async def test_a_desk_that_is_down_means_the_usual_checks(monkeypatch, chat, dispatcher, domain, unused_tcp_port):
    url = f"http://127.0.0.1:{unused_tcp_port}"
    settings = replace(
        load_settings(environ={}),
        desk_url=url,
        incident_board_url=f"{url}/api/incidents",
        upstream_status_url=None,
        status_timeout_seconds=0.5,
    )
    for module in (incidents, incident_reports):
        monkeypatch.setattr(module, "current_settings", lambda: settings)
    events = await ActionCheckIncident().run(dispatcher, chat(), domain)
    await reports_in_flight()
    assert events == [SlotSet("incident_id", None), SlotSet("incident_ticket", None), SlotSet("incident_match", "clear")]


async def test_told_once_going_on_with_the_checks_does_not_repeat_it(desk, chat, dispatcher, domain):
    desk.incidents = [incident()]
    events = await ActionCheckIncident().run(dispatcher, chat(slots={"incident_told": 7}), domain)
    assert events == [SlotSet("incident_id", 7), SlotSet("incident_ticket", "INC-0007"), SlotSet("incident_match", "clear")]
    assert dispatcher.messages == []
    assert await reported(desk) == []


# --- at the first report of 1000 (before any check was offered) --------------------------


async def test_a_report_hears_of_the_incident_first(desk, chat, dispatcher, domain):
    desk.incidents = [incident()]
    events = await ActionCheckIncident().run(dispatcher, chat(intent="ask_how_to_fix"), domain)
    assert events[-2:] == [SlotSet("incident_told", 7), SlotSet("incident_match", "told")]
    assert [message["response"] for message in dispatcher.messages] == ["utter_incident_active"]
    [report] = await reported(desk)
    assert report["kind"] == "reported" and report["answer"] == "pos机报1000"


@pytest.mark.parametrize(
    "intent, answer",
    [("ask_how_to_fix", "clear_steps"), ("inform_not_fixed", "clear_offer"), ("start_diagnostics", "clear")],
)
async def test_without_an_incident_each_report_gets_its_usual_answer(desk, chat, dispatcher, domain, intent, answer):
    events = await ActionCheckIncident().run(dispatcher, chat(intent=intent), domain)
    assert events == [SlotSet("incident_id", None), SlotSet("incident_ticket", None), SlotSet("incident_match", answer)]
    # The usual answer is the rules' (data/rules/answers.yml): nothing said here.
    assert dispatcher.messages == []
    assert len(await reported(desk)) == 1


async def test_a_report_after_the_merchant_was_told_is_answered_as_usual(desk, chat, dispatcher, domain):
    desk.incidents = [incident()]
    events = await ActionCheckIncident().run(dispatcher, chat(slots={"incident_told": 7}, intent="ask_how_to_fix"), domain)
    assert events[-1] == SlotSet("incident_match", "clear_steps")
    assert dispatcher.messages == []


async def test_the_checks_accepted_after_a_report_start_them(desk, chat, dispatcher, domain):
    # The offer's "yes" comes right after action_reset_checks, whatever the intent was.
    tracker = chat(intent="ask_how_to_fix")
    tracker.latest_action_name = "action_reset_checks"
    events = await ActionCheckIncident().run(dispatcher, tracker, domain)
    assert events[-1] == SlotSet("incident_match", "clear")


async def test_the_region_question_at_a_report_keeps_the_reports_answer(desk, chat, dispatcher, domain):
    desk.incidents = [incident(scope={"regions": ["4403"]})]
    events = await ActionCheckIncident().run(dispatcher, chat(intent="ask_how_to_fix"), domain)
    assert events == [SlotSet("incident_check_for", "clear_steps"), SlotSet("incident_match", "ask_region")]
    # The answer is elsewhere: the report's answer, though the last message is the region.
    after = chat(slots={"region": "other", "incident_check_for": "clear_steps"}, intent="inform", text='/inform{"region": "other"}')
    after.latest_action_name = "region_form"
    events = await ActionCheckIncident().run(CollectingDispatcher(), after, domain)
    assert events[-1] == SlotSet("incident_match", "clear_steps")
    # In Shenzhen: told.
    shenzhen = chat(slots={"region": "4403", "incident_check_for": "clear_steps"}, intent="inform")
    shenzhen.latest_action_name = "region_form"
    assert (await ActionCheckIncident().run(CollectingDispatcher(), shenzhen, domain))[-1] == SlotSet("incident_match", "told")


@pytest.mark.parametrize(
    "scope, slots, channel, told",
    [
        ({"regions": ["4403"]}, {"merchant_id": SHENZHEN_NUMBER}, "socketio", True),
        ({"regions": ["44"]}, {"merchant_id": SHENZHEN_NUMBER}, "socketio", True),
        ({"regions": ["4403"]}, {"merchant_id": SHANGHAI_NUMBER}, "socketio", False),
        ({"regions": ["4403"]}, {"region": "4403"}, "socketio", True),
        ({"channels": ["wecom_kf"]}, {}, "wecom_kf", True),
        ({"channels": ["wecom_kf"]}, {}, "socketio", False),
        ({"terminal_models": ["A920"]}, {"terminal_model": "pax_a920"}, "socketio", True),
        ({"terminal_models": ["A920"]}, {"terminal_model": "newland_n910"}, "socketio", False),
        # An unknown model is not asked for: the incident is not told (the checks find it).
        ({"terminal_models": ["A920"]}, {}, "socketio", False),
        ({"gateways": ["cup-south"]}, {}, "socketio", False),
    ],
)
async def test_the_scope_decides_who_is_told(desk, chat, dispatcher, domain, scope, slots, channel, told):
    desk.incidents = [incident(scope=scope)]
    events = await ActionCheckIncident().run(dispatcher, chat(slots=slots, channel=channel), domain)
    assert events[-1] == SlotSet("incident_match", "told" if told else "clear")
    assert responses(dispatcher) == (["utter_incident_active"] if told else [])


async def test_a_legacy_incident_with_a_region_name_is_scoped_by_it(desk, chat, dispatcher, domain):
    legacy = {k: v for k, v in incident().items() if k != "scope"}
    desk.incidents = [{**legacy, "region": "上海"}]
    events = await ActionCheckIncident().run(dispatcher, chat(slots={"merchant_id": SHANGHAI_NUMBER}), domain)
    assert events[-1] == SlotSet("incident_match", "told")


# --- the region question ------------------------------------------------------------


async def test_an_unknown_region_gets_one_question_with_the_affected_areas(desk, chat, dispatcher, domain):
    desk.incidents = [incident(scope={"regions": ["4403", "3301"]})]
    events = await ActionCheckIncident().run(dispatcher, chat(), domain)
    assert events == [SlotSet("incident_check_for", "clear"), SlotSet("incident_match", "ask_region")]
    [message] = dispatcher.messages
    assert message["response"] == "utter_question_region"
    assert [(b["title"], b["payload"]) for b in message["buttons"]] == [
        ("深圳市", '/inform{"region": "4403"}'),
        ("杭州市", '/inform{"region": "3301"}'),
        ("都不在 / 其他地区", '/inform{"region": "other"}'),
    ]
    assert await reported(desk) == []  # reported once the check has decided


async def test_elsewhere_is_not_asked_again(desk, chat, dispatcher, domain):
    desk.incidents = [incident(scope={"regions": ["4403"]})]
    events = await ActionCheckIncident().run(dispatcher, chat(slots={"region": "other"}), domain)
    assert events[-1] == SlotSet("incident_match", "clear")
    assert len(await reported(desk)) == 1


@pytest.mark.parametrize(
    "typed, region",
    [
        ("4403", "4403"),
        ("深圳南山", "4403"),
        ("Hangzhou", "3301"),
        (f"商户号{SHENZHEN_NUMBER}", "4403"),
        ("都不是", "other"),
        ("other", "other"),
    ],
)
def test_the_region_answer(make_tracker, dispatcher, domain, typed, region):
    assert ValidateRegionForm().validate_region(typed, dispatcher, make_tracker(), domain) == {"region": region}
    assert dispatcher.messages == []


def test_a_place_not_in_the_table_is_asked_again(make_tracker, dispatcher, domain):
    assert ValidateRegionForm().validate_region("火星", dispatcher, make_tracker(), domain) == {"region": None}
    assert responses(dispatcher) == ["utter_region_unknown"]


# --- tell me when it is back --------------------------------------------------------


async def test_subscribing_links_the_merchant_once(desk, chat, dispatcher, domain):
    desk.incidents = [incident()]
    tracker = chat(slots={"merchant_id": SHENZHEN_NUMBER, "language": "en"}, channel="wecom_kf", text="/subscribe_incident")
    events = await ActionSubscribeIncident().run(dispatcher, tracker, domain)
    assert events == [SlotSet("incident_id", 7), SlotSet("incident_ticket", "INC-0007")]
    [message] = dispatcher.messages
    assert message["response"] == "utter_incident_subscribed" and message["ticket"] == "INC-0007"
    [(incident_id, body, status)] = desk.link_calls
    assert (incident_id, status) == (7, 201)
    assert body == {
        "sender_id": "merchant-1",
        "channel": "wecom_kf",
        "language": "en",
        "merchant_id": SHENZHEN_NUMBER,
        "region": "4403",
        "wants_person": False,
        "subscribed": True,
    }
    await ActionSubscribeIncident().run(dispatcher, tracker, domain)
    assert desk.link_calls[-1][2] == 200  # the same merchant again: updated, not added


async def test_an_incident_over_before_the_subscription_offers_the_checks(desk, chat, dispatcher, domain):
    desk.incidents = [incident()]
    desk.closed_for_links.add(7)
    await ActionSubscribeIncident().run(dispatcher, chat(), domain)
    assert responses(dispatcher) == ["utter_incident_subscribe_failed"]
    payloads = [b["payload"] for b in domain["responses"]["utter_incident_subscribe_failed"][1]["buttons"]]
    assert payloads == ["/start_diagnostics", "/request_human"]


async def test_no_incident_to_subscribe_to(desk, chat, dispatcher, domain):
    events = await ActionSubscribeIncident().run(dispatcher, chat(), domain)
    assert events == [SlotSet("incident_id", None)]
    assert responses(dispatcher) == ["utter_incident_none"]


# --- a person during the incident: linked, not escalated -------------------------


def person_tracker(chat, **slots):
    return chat(
        slots={"incident_id": 7, "incident_ticket": "INC-0007", "contact": "13812345678", "merchant_id": SHENZHEN_NUMBER, **slots},
        text="转人工",
    )


async def test_a_person_during_the_incident_joins_its_case_without_an_escalation(desk, chat, dispatcher, domain):
    desk.incidents = [incident(scope={"regions": ["44"]})]
    events = await ActionEscalate().run(dispatcher, person_tracker(chat), domain)
    assert events == [
        SlotSet("incident_ticket", "INC-0007"),
        SlotSet("diagnostics_outcome", "incident_linked"),
        SlotSet("needs_person", False),
    ]
    assert ConversationPaused() not in events
    [message] = dispatcher.messages
    assert message["response"] == "utter_incident_linked" and message["ticket"] == "INC-0007"
    assert desk.escalations == []
    [(_, body, status)] = desk.link_calls
    assert status == 201 and body["wants_person"] is True and body["subscribed"] is False
    assert body["contact"] == "13812345678" and body["region"] == "4403"


async def test_my_problem_is_different_gets_a_normal_escalation(desk, chat, dispatcher, domain):
    desk.incidents = [incident()]
    tracker = person_tracker(chat, incident_not_mine=True, problem_summary="只有我这台机器报1000")
    events = await ActionEscalate().run(dispatcher, tracker, domain)
    assert ConversationPaused() in events
    assert desk.link_calls == [] and len(desk.escalations) == 1
    assert responses(dispatcher) == ["utter_escalated"]


async def test_a_shop_whose_other_devices_are_offline_too_is_escalated(desk, chat, dispatcher, domain):
    desk.incidents = [incident()]
    tracker = person_tracker(chat, shop_offline="true", problem_summary="店里网络全断了")
    events = await ActionEscalate().run(dispatcher, tracker, domain)
    assert ConversationPaused() in events and len(desk.escalations) == 1
    assert desk.link_calls == []
    buttons = domain["responses"]["utter_ask_network_ok"][1]["buttons"]
    # As Rasa sends it (the domain escapes the braces, tests/test_response_templates.py).
    assert interpolate_text(buttons[2]["payload"], {}) == '/inform_not_fixed{"shop_offline": "true"}'


async def test_checks_that_show_another_model_than_the_incidents_escalate(desk, chat, dispatcher, domain):
    desk.incidents = [incident(scope={"terminal_models": ["A920"]})]
    tracker = person_tracker(chat, terminal_model="newland_n910")
    events = await ActionEscalate().run(dispatcher, tracker, domain)
    assert ConversationPaused() in events and len(desk.escalations) == 1


async def test_an_incident_closed_meanwhile_escalates_as_usual(desk, chat, dispatcher, domain):
    desk.incidents = [incident()]
    desk.closed_for_links.add(7)
    events = await ActionEscalate().run(dispatcher, person_tracker(chat), domain)
    assert ConversationPaused() in events and len(desk.escalations) == 1
    assert desk.link_calls[0][2] == 404


async def test_the_description_is_not_asked_while_the_incident_explains_it(make_tracker, dispatcher, domain):
    slots = ["merchant_ref", "contact", "problem_summary"]
    form = ValidateHandoffForm()
    during = make_tracker(slots={"incident_id": 7})
    assert await form.required_slots(slots, dispatcher, during, domain) == ["merchant_ref", "contact"]
    for elsewhere in ({"incident_not_mine": True}, {"shop_offline": "true"}):
        tracker = make_tracker(slots={"incident_id": 7, **elsewhere})
        assert await form.required_slots(slots, dispatcher, tracker, domain) == slots


# --- the server-status step with the new incident JSON ------------------------------


async def test_the_server_step_names_the_affected_areas_to_a_merchant_of_unknown_region(desk, chat, dispatcher, domain):
    desk.incidents = [incident(scope={"regions": ["4403"]})]
    events = await ActionAskServerOk().run(dispatcher, chat(), domain)
    assert events == [SlotSet("server_status", "incident"), SlotSet("incident_message", "【深圳市】银联网关故障，刷卡暂时失败。")]


async def test_the_server_step_ignores_an_incident_elsewhere(desk, chat, dispatcher, domain):
    desk.incidents = [incident(scope={"regions": ["4403"]})]
    events = await ActionAskServerOk().run(dispatcher, chat(slots={"merchant_id": SHANGHAI_NUMBER}), domain)
    assert events == [SlotSet("server_status", "ok")]
    assert responses(dispatcher) == ["utter_question_server_ok_clear"]


async def test_a_failed_server_step_is_reported_with_the_merchants_words(desk, chat, dispatcher, domain):
    tracker = chat(slots={"terminal_model": "pax_a920"}, text="还是不行，一直报1000")
    ValidateDiagnosticsForm().validate_server_ok(False, dispatcher, tracker, domain)
    ValidateDiagnosticsForm().validate_server_ok(True, dispatcher, tracker, domain)
    [report] = await reported(desk)
    assert report["kind"] == "server_status_failed"
    assert report["terminal_model"] == "pax_a920" and report["answer"] == "还是不行，一直报1000"


async def test_a_button_is_not_reported_as_the_merchants_words(desk, chat, dispatcher, domain):
    tracker = chat(text="/inform_not_fixed")
    ValidateDiagnosticsForm().validate_server_ok(False, dispatcher, tracker, domain)
    [report] = await reported(desk)
    assert "answer" not in report

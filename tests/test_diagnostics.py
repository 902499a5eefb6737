"""The diagnostics form's validation action and the questions it asks: exact events and responses."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from rasa_sdk.events import SlotSet

from actions import diagnostics
from actions.diagnostics import (
    QUESTIONS,
    ActionAskServerOk,
    ActionFinishDiagnostics,
    ValidateDiagnosticsForm,
    ask_restart_ok,
    ask_software_ok,
    ask_software_version,
    ask_terminal_model,
)
from actions.settings import load_settings
from tests.harness.actions import responses

# What rasa-sdk hands the validator: Rasa sends no domain with the call (endpoints.yml).
NO_DOMAIN: Dict[str, Any] = {}

FORM_SLOTS = [
    "network_ok",
    "terminal_model",
    "restart_ok",
    "server_ok",
    "software_version",
    "software_ok",
]


def form_tracker(make_tracker, slots: Dict[str, Any], newly_set: Dict[str, Any], **kw):
    """A tracker inside the form where ``newly_set`` was extracted from the last message."""
    events = [{"event": "user", "text": kw.pop("text", "")}] + [
        {"event": "slot", "name": name, "value": value} for name, value in newly_set.items()
    ]
    return make_tracker(
        slots={**slots, **newly_set, "requested_slot": kw.pop("requested", None)},
        events=events,
        active_loop="diagnostics_form",
        **kw,
    )


# --- which steps are still needed -------------------------------------------------


async def test_all_steps_are_needed_at_the_start(make_tracker, dispatcher, domain):
    required = await ValidateDiagnosticsForm().required_slots(FORM_SLOTS, dispatcher, make_tracker(), domain)
    assert required == FORM_SLOTS


@pytest.mark.parametrize(
    "slots, last_needed",
    [
        ({"network_ok": True}, "network_ok"),
        ({"network_ok": False, "terminal_model": "unknown", "restart_ok": True}, "restart_ok"),
        (
            {"network_ok": False, "restart_ok": False, "server_ok": False, "server_status": "incident"},
            "server_ok",
        ),
        (
            {"network_ok": False, "restart_ok": False, "server_ok": False, "server_status": "ok", "software_status": "latest"},
            "software_version",
        ),
    ],
)
async def test_the_checks_stop_where_they_can(make_tracker, dispatcher, domain, slots, last_needed):
    required = await ValidateDiagnosticsForm().required_slots(FORM_SLOTS, dispatcher, make_tracker(slots=slots), domain)
    assert required == FORM_SLOTS[: FORM_SLOTS.index(last_needed) + 1]


# --- the validation action as Rasa calls it -----------------------------------------


async def test_works_after_network_step_ends_the_form(make_tracker, dispatcher, domain):
    tracker = form_tracker(make_tracker, {}, {"network_ok": True}, requested="network_ok")
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [SlotSet("network_ok", True), SlotSet("requested_slot", None)]
    assert dispatcher.messages == []


async def test_still_broken_after_network_asks_for_the_model(make_tracker, dispatcher, domain):
    tracker = form_tracker(make_tracker, {}, {"network_ok": False}, requested="network_ok")
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [SlotSet("network_ok", False), SlotSet("requested_slot", "terminal_model")]
    # The validation action asks the model question itself (Rasa finds no ask for it).
    assert responses(dispatcher) == ["utter_question_terminal_model"]
    assert len(dispatcher.messages[0]["buttons"]) == 6


async def test_a_non_boolean_answer_is_asked_again(make_tracker, dispatcher, domain):
    tracker = form_tracker(make_tracker, {}, {"network_ok": "yes"}, requested="network_ok")
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [SlotSet("network_ok", None), SlotSet("requested_slot", "network_ok")]
    # Its question is the plain utter_ask_network_ok, which Rasa sends itself.
    assert dispatcher.messages == []


async def test_the_restart_question_uses_the_model_just_validated(make_tracker, dispatcher, domain):
    tracker = form_tracker(make_tracker, {"network_ok": False}, {"terminal_model": "A920"}, requested="terminal_model")
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [SlotSet("terminal_model", "pax_a920"), SlotSet("requested_slot", "restart_ok")]
    [message] = dispatcher.messages
    assert message["response"] == "utter_question_restart_ok"
    assert message["model_name"] == " (PAX A920)"


async def test_still_broken_after_restart_leaves_the_status_check_to_its_action(make_tracker, dispatcher):
    tracker = form_tracker(
        make_tracker,
        {"network_ok": False, "terminal_model": "unknown"},
        {"restart_ok": False},
        requested="restart_ok",
    )
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [SlotSet("restart_ok", False), SlotSet("requested_slot", "server_ok")]
    assert dispatcher.messages == []  # Rasa runs action_ask_server_ok


@pytest.mark.parametrize("requested", FORM_SLOTS)
async def test_an_answer_to_something_else_sets_no_slot(make_tracker, dispatcher, requested):
    # The merchant asked an FAQ question instead: nothing to validate. Rasa lets another
    # action answer only if the validator sets no slot besides requested_slot.
    before = {slot: False for slot in FORM_SLOTS[: FORM_SLOTS.index(requested)]}
    before.update({"terminal_model": "pax_a920"} if "terminal_model" in before else {})
    before.update({"software_version": "2.1", "software_status": "outdated"} if "software_version" in before else {})
    before.update({"server_status": "ok"} if "server_ok" in before else {})
    tracker = form_tracker(make_tracker, before, {}, requested=requested, text="手续费怎么收")
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [SlotSet("requested_slot", requested)]


def test_questions_the_validator_asks_have_no_ask_of_their_own(domain):
    # Rasa would ask these slots a second time if the domain had an ask for them.
    asks = {f"{prefix}{slot}" for slot in QUESTIONS for prefix in ("action_ask_", "utter_ask_")}
    asks |= {f"{prefix}diagnostics_form_{slot}" for slot in QUESTIONS for prefix in ("action_ask_", "utter_ask_")}
    # An action with settings is listed as {name: settings}.
    actions = {next(iter(a)) if isinstance(a, dict) else a for a in domain["actions"]}
    assert asks.isdisjoint(actions) and asks.isdisjoint(domain["responses"])
    assert set(QUESTIONS) < set(domain["forms"]["diagnostics_form"]["required_slots"])
    # ...and Rasa has an ask for every other slot of the form.
    others = set(domain["forms"]["diagnostics_form"]["required_slots"]) - set(QUESTIONS)
    assert others == {"network_ok", "server_ok"}
    assert "utter_ask_network_ok" in domain["responses"] and "action_ask_server_ok" in actions


@pytest.mark.parametrize(
    "mention, key",
    [
        ("A920", "pax_a920"),
        ("a 920", "pax_a920"),
        ("商米P2", "sunmi_p2"),
        ("newland_n910", "newland_n910"),
        ("我的是升腾 K9 的", "centerm_k9"),
        ("unknown", "unknown"),
        ("<script>alert(1)</script>", "unknown"),
        (42, "unknown"),
    ],
)
async def test_terminal_model_is_mapped_to_a_knowledge_key(make_tracker, dispatcher, domain, mention, key):
    tracker = form_tracker(make_tracker, {"network_ok": False}, {"terminal_model": mention}, requested="terminal_model")
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [SlotSet("terminal_model", key), SlotSet("requested_slot", "restart_ok")]


BEFORE_SOFTWARE = {
    "network_ok": False,
    "terminal_model": "newland_n910",
    "restart_ok": False,
    "server_ok": False,
    "server_status": "ok",
}


async def test_outdated_version_asks_to_update(make_tracker, dispatcher, domain):
    tracker = form_tracker(make_tracker, BEFORE_SOFTWARE, {"software_version": "V2.1"}, requested="software_version")
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [
        SlotSet("software_version", "2.1"),
        SlotSet("software_status", "outdated"),
        SlotSet("requested_slot", "software_ok"),
    ]
    [message] = dispatcher.messages
    assert message["response"] == "utter_question_software_ok_outdated"
    assert (message["version"], message["latest"]) == ("2.1", "2.8.0")


async def test_latest_version_ends_the_checks_unresolved(make_tracker, dispatcher, domain):
    tracker = form_tracker(make_tracker, BEFORE_SOFTWARE, {"software_version": "2.8.0"}, requested="software_version")
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [
        SlotSet("software_version", "2.8.0"),
        SlotSet("software_status", "latest"),
        SlotSet("requested_slot", None),
    ]
    assert responses(dispatcher) == ["utter_software_latest"]
    assert dispatcher.messages[0]["version"] == "2.8.0"


async def test_unreadable_version_is_asked_again(make_tracker, dispatcher, domain):
    tracker = form_tracker(make_tracker, BEFORE_SOFTWARE, {"software_version": "abc"}, requested="software_version")
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [SlotSet("software_version", None), SlotSet("requested_slot", "software_version")]
    assert responses(dispatcher) == ["utter_version_unreadable", "utter_question_software_version"]


async def test_unknown_version_still_offers_the_update(make_tracker, dispatcher, domain):
    tracker = form_tracker(make_tracker, BEFORE_SOFTWARE, {"software_version": "unknown"}, requested="software_version")
    events = await ValidateDiagnosticsForm().run(dispatcher, tracker, NO_DOMAIN)
    assert events == [
        SlotSet("software_version", "unknown"),
        SlotSet("software_status", "unknown"),
        SlotSet("requested_slot", "software_ok"),
    ]
    assert responses(dispatcher) == ["utter_question_software_ok_unknown"]


# --- the questions ------------------------------------------------------------------


async def test_model_question_has_a_button_per_model(make_tracker, dispatcher, domain):
    ask_terminal_model(dispatcher, make_tracker())
    [message] = dispatcher.messages
    assert message["response"] == "utter_question_terminal_model"
    assert [b["payload"] for b in message["buttons"]] == [
        '/inform{"terminal_model": "pax_a920"}',
        '/inform{"terminal_model": "newland_n910"}',
        '/inform{"terminal_model": "landi_a8"}',
        '/inform{"terminal_model": "sunmi_p2"}',
        '/inform{"terminal_model": "centerm_k9"}',
        "/dont_know",
    ]
    assert message["buttons"][-1]["title"] == "其他 / 不知道"


async def test_model_question_in_english(make_tracker, dispatcher, domain):
    ask_terminal_model(dispatcher, make_tracker(slots={"language": "en"}))
    assert dispatcher.messages[0]["buttons"][-1]["title"] == "Other / not sure"


@pytest.mark.parametrize(
    "language, model, name, fragment",
    [
        ("zh", "pax_a920", " (PAX A920)", "长按右侧电源键3秒"),
        ("en", "pax_a920", " (PAX A920)", "Hold the power key on the right side"),
        ("zh", "unknown", "", "长按电源键约3秒"),
        ("en", None, "", "Hold the power key for about 3 seconds"),
    ],
)
async def test_restart_steps_follow_the_model_and_language(make_tracker, dispatcher, domain, language, model, name, fragment):
    tracker = make_tracker(slots={"language": language, "terminal_model": model})
    ask_restart_ok(dispatcher, tracker)
    [message] = dispatcher.messages
    assert message["response"] == "utter_question_restart_ok"
    assert message["model_name"] == name
    assert fragment in message["restart_steps"]


async def test_version_question_says_where_to_look(make_tracker, dispatcher, domain):
    tracker = make_tracker(slots={"terminal_model": "landi_a8"})
    ask_software_version(dispatcher, tracker)
    assert responses(dispatcher) == ["utter_question_software_version"]
    assert "系统信息" in dispatcher.messages[0]["version_location"]


async def test_update_question_for_an_outdated_version(make_tracker, dispatcher, domain):
    tracker = make_tracker(
        slots={"language": "en", "terminal_model": "newland_n910", "software_version": "2.1", "software_status": "outdated"}
    )
    ask_software_ok(dispatcher, tracker)
    [message] = dispatcher.messages
    assert message["response"] == "utter_question_software_ok_outdated"
    assert (message["version"], message["latest"]) == ("2.1", "2.8.0")
    assert "Online upgrade" in message["update_steps"]


async def test_update_question_when_the_version_is_unknown(make_tracker, dispatcher, domain):
    tracker = make_tracker(slots={"software_version": "unknown", "software_status": "unknown"})
    ask_software_ok(dispatcher, tracker)
    assert responses(dispatcher) == ["utter_question_software_ok_unknown"]


# --- the server-status step against real HTTP servers on loopback --------------------


async def start_json_server(payload: Any, status: int = 200, seen: list = None) -> TestServer:
    """A real HTTP server on 127.0.0.1 answering every GET with the given JSON."""

    async def handler(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(dict(request.headers))
        if isinstance(payload, str):
            return web.Response(text=payload, status=status, content_type="text/html")
        return web.json_response(payload, status=status)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
def use_sources(monkeypatch):
    """Point the action at the given status URLs (None = source not configured)."""

    def configure(board=None, upstream=None, token=None):
        settings = replace(
            load_settings(environ={}),
            incident_board_url=board,
            upstream_status_url=upstream,
            status_timeout_seconds=1.0,
            desk_api_token=token,
        )
        monkeypatch.setattr(diagnostics, "current_settings", lambda: settings)

    return configure


INCIDENT = {
    "id": 7,
    "region": "上海",
    "status": "active",
    "message": {"zh": "支付网关维护中。", "en": "Payment gateway maintenance."},
    "starts_at": "2026-11-25T12:00:00+08:00",
    "expected_end": "2026-11-25T14:00:00+08:00",
}


async def test_known_outage_is_told_with_its_end_time(make_tracker, dispatcher, domain, use_sources):
    seen: list = []
    board = await start_json_server({"incidents": [INCIDENT]}, seen=seen)
    try:
        use_sources(board=str(board.make_url("/api/incidents")), token="desk-token")
        events = await ActionAskServerOk().run(dispatcher, make_tracker(), domain)
    finally:
        await board.close()
    assert events == [
        SlotSet("server_status", "incident"),
        SlotSet("incident_message", "【上海】支付网关维护中。"),
    ]
    [message] = dispatcher.messages
    assert message["response"] == "utter_question_server_ok_incident"
    assert message["expected_end"] == "11-25 14:00"  # business time (Asia/Shanghai)
    assert seen[0]["Authorization"] == "Bearer desk-token"


async def test_outage_without_end_time_in_english(make_tracker, dispatcher, domain, use_sources):
    board = await start_json_server({"incidents": [{**INCIDENT, "expected_end": None}]})
    try:
        use_sources(board=str(board.make_url("/api/incidents")))
        events = await ActionAskServerOk().run(dispatcher, make_tracker(slots={"language": "en"}), domain)
    finally:
        await board.close()
    assert events[1] == SlotSet("incident_message", "【上海】Payment gateway maintenance.")
    assert responses(dispatcher) == ["utter_question_server_ok_incident_open"]


async def test_resolved_incidents_do_not_count(make_tracker, dispatcher, domain, use_sources):
    board = await start_json_server({"incidents": [{**INCIDENT, "status": "resolved"}]})
    try:
        use_sources(board=str(board.make_url("/api/incidents")))
        events = await ActionAskServerOk().run(dispatcher, make_tracker(), domain)
    finally:
        await board.close()
    assert events == [SlotSet("server_status", "ok")]
    assert responses(dispatcher) == ["utter_question_server_ok_clear"]


async def test_statuspage_indicator_reports_an_outage(make_tracker, dispatcher, domain, use_sources):
    page = await start_json_server({"status": {"indicator": "major", "description": "Partial System Outage"}})
    try:
        use_sources(upstream=str(page.make_url("/api/v2/status.json")))
        events = await ActionAskServerOk().run(dispatcher, make_tracker(), domain)
    finally:
        await page.close()
    assert events == [
        SlotSet("server_status", "incident"),
        SlotSet("incident_message", "Partial System Outage"),
    ]
    assert responses(dispatcher) == ["utter_question_server_ok_incident_open"]


async def test_one_answering_source_is_enough_to_say_clear(make_tracker, dispatcher, domain, use_sources, unused_tcp_port):
    page = await start_json_server({"status": {"indicator": "none", "description": "All good"}})
    try:
        use_sources(
            board=f"http://127.0.0.1:{unused_tcp_port}/api/incidents",
            upstream=str(page.make_url("/api/v2/status.json")),
        )
        events = await ActionAskServerOk().run(dispatcher, make_tracker(), domain)
    finally:
        await page.close()
    assert events == [SlotSet("server_status", "ok")]


@pytest.mark.parametrize(
    "payload, status",
    [
        ("<html>502 Bad Gateway</html>", 502),
        ("<html>login</html>", 200),
        ({"unexpected": True}, 200),
        ({"incidents": []}, 401),
    ],
)
async def test_a_source_that_does_not_answer_properly_is_not_trusted(make_tracker, dispatcher, domain, use_sources, payload, status):
    board = await start_json_server(payload, status=status)
    try:
        use_sources(board=str(board.make_url("/api/incidents")))
        events = await ActionAskServerOk().run(dispatcher, make_tracker(), domain)
    finally:
        await board.close()
    assert events == [SlotSet("server_status", "unchecked")]
    assert responses(dispatcher) == ["utter_question_server_ok_unchecked"]


async def test_no_source_reachable_never_says_all_is_fine(make_tracker, dispatcher, domain, use_sources, unused_tcp_port):
    use_sources(board=f"http://127.0.0.1:{unused_tcp_port}/api/incidents")
    events = await ActionAskServerOk().run(dispatcher, make_tracker(), domain)
    assert events == [SlotSet("server_status", "unchecked")]
    assert responses(dispatcher) == ["utter_question_server_ok_unchecked"]


async def test_no_source_configured_cannot_check(make_tracker, dispatcher, domain, use_sources):
    use_sources()
    events = await ActionAskServerOk().run(dispatcher, make_tracker(), domain)
    assert events == [SlotSet("server_status", "unchecked")]


# --- the end of the checks ------------------------------------------------------------


async def test_fixed_gives_tips_and_asks_for_a_rating(make_tracker, dispatcher, domain):
    tracker = make_tracker(slots={"network_ok": False, "restart_ok": True})
    events = await ActionFinishDiagnostics().run(dispatcher, tracker, domain)
    assert events == [
        SlotSet("diagnostics_outcome", "resolved"),
        SlotSet("fixed_step", "restart"),
        SlotSet("needs_person", False),
    ]
    assert responses(dispatcher) == [
        "utter_diagnostics_resolved",
        "utter_prevention",
        "utter_ask_rating",
    ]
    assert dispatcher.messages[0]["step"] == "重启POS机"
    assert [b["payload"] for b in dispatcher.messages[2]["buttons"]] == [f'/rate{{"rating": "{n}"}}' for n in (5, 4, 3, 2, 1)]


async def test_fixed_step_named_in_english(make_tracker, dispatcher, domain):
    tracker = make_tracker(slots={"language": "en", "network_ok": False, "restart_ok": False, "server_ok": False, "software_ok": True})
    events = await ActionFinishDiagnostics().run(dispatcher, tracker, domain)
    assert events[1] == SlotSet("fixed_step", "software")
    assert dispatcher.messages[0]["step"] == "software update"


async def test_known_outage_asks_to_wait(make_tracker, dispatcher, domain):
    tracker = make_tracker(
        slots={
            "network_ok": False,
            "restart_ok": False,
            "server_ok": False,
            "server_status": "incident",
            "incident_message": "支付网关维护中。",
        }
    )
    events = await ActionFinishDiagnostics().run(dispatcher, tracker, domain)
    assert events == [SlotSet("diagnostics_outcome", "known_incident"), SlotSet("needs_person", False)]
    assert responses(dispatcher) == ["utter_incident_wait"]
    assert dispatcher.messages[0]["incident"] == "支付网关维护中。"


async def test_nothing_helped_hands_over_to_a_person(make_tracker, dispatcher, domain):
    tracker = make_tracker(
        slots={"network_ok": False, "restart_ok": False, "server_ok": False, "server_status": "ok", "software_status": "latest"}
    )
    events = await ActionFinishDiagnostics().run(dispatcher, tracker, domain)
    assert events == [SlotSet("diagnostics_outcome", "unresolved"), SlotSet("needs_person", True)]
    assert responses(dispatcher) == ["utter_diagnostics_unresolved"]

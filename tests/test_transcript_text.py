"""Words, not payloads: a button click reads as the button's title everywhere."""

from __future__ import annotations

from hypothesis import given, strategies as st

from support_desk.relay import paused_messages
from common.transcript_text import is_payload, readable_messages, spoken_text

BUTTONS = [{"title": "✅ 好了，能用了", "payload": "/inform_fixed"}, {"title": "❌ 还是报1000", "payload": "/inform_not_fixed"}]


def test_a_clicked_button_reads_as_its_title():
    assert spoken_text("/inform_not_fixed", BUTTONS) == "❌ 还是报1000"
    assert spoken_text(" /inform_fixed ", BUTTONS) == "✅ 好了，能用了"


def test_the_widgets_opening_payload_is_nothing_the_merchant_said():
    assert spoken_text('/greet{"language": "zh"}') is None


def test_a_payload_without_its_button_reads_as_words():
    assert spoken_text("/dont_know") == "[dont know]"
    assert spoken_text('/inform_model{"terminal_model": "A920"}') == "[inform model: A920]"
    assert spoken_text('/inform{"x": {"deep": 1}}') == "[inform]"


@given(st.text())
def test_typed_text_is_kept_and_no_payload_reaches_an_agent(text):
    words = spoken_text(text, BUTTONS)
    if not is_payload(text):
        assert words == text
    else:
        assert words is None or (not is_payload(words) and "{" not in words[:2])


@given(st.from_regex(r"/[a-z_]{1,20}", fullmatch=True), st.text(min_size=1))
def test_any_button_is_found_by_its_payload(payload, title):
    assert spoken_text(payload, [{"title": "other", "payload": "/x_other"}, {"title": title, "payload": payload}]) == title


def test_each_click_is_read_against_the_buttons_just_before_it():
    events = [
        {"event": "user", "text": '/greet{"language": "zh"}', "timestamp": 1.0},
        {"event": "bot", "text": "重启后还报吗？", "data": {"buttons": BUTTONS}, "timestamp": 2.0},
        {"event": "user", "text": "/inform_not_fixed", "timestamp": 3.0},
        {"event": "bot", "text": "好的", "data": {"quick_replies": [{"title": "不知道", "payload": "/dont_know"}]}, "timestamp": 4.0},
        {"event": "user", "text": "/dont_know", "timestamp": 5.0},
        {"event": "user", "text": "/inform_fixed", "timestamp": 6.0},  # no button offered just before
    ]
    assert [words for _, words in readable_messages(events)] == ["重启后还报吗？", "❌ 还是报1000", "好的", "不知道", "[inform fixed]"]


def test_the_handoff_span_has_the_bots_ticket_message_and_titles_not_payloads():
    case = {"id": 1, "ticket": "PX-7K2Q9M", "created_at": "2026-01-01T00:00:10+00:00"}
    events = [
        {"event": "bot", "text": "还报1000吗？", "data": {"buttons": BUTTONS}, "timestamp": 1767225590.0},
        {"event": "user", "text": "/inform_not_fixed", "timestamp": 1767225600.0},
        {"event": "action", "name": "action_escalate", "timestamp": 1767225601.0},
        {"event": "bot", "text": "您的工单号是 PX-7K2Q9M，人工客服会在 12-02 09:30 前在这里回复您。", "timestamp": 1767225602.0},
        {"event": "slot", "name": "ticket", "value": "PX-7K2Q9M", "timestamp": 1767225602.0},
        {"event": "pause", "timestamp": 1767225602.0},
        {"event": "bot", "text": "您好", "metadata": {"desk_message_id": 7}, "timestamp": 1767225610.0},
        {"event": "user", "text": "/inform_not_fixed", "timestamp": 1767225620.0},
    ]
    lines = paused_messages(events, case)
    assert [(m["role"], m["text"]) for m in lines] == [
        ("bot", "您的工单号是 PX-7K2Q9M，人工客服会在 12-02 09:30 前在这里回复您。"),
        ("user", "[inform not fixed]"),  # the desk's message in between offered no buttons
    ]

"""The 微信客服 channel against a fake platform that enforces the platform's rules
(tests/fake_wecom_kf.py) and a recording stand-in for the desk's report endpoint that
checks the contract strictly (tests/recording_desk.py). Callbacks are signed and encrypted
by the test from the published algorithm (tests/wecom_protocol.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import List

import pytest
from aiohttp import web
from hypothesis import given, strategies as st
from rasa.core.channels.channel import UserMessage
from rasa.shared.exceptions import RasaException

from redis.exceptions import LockError

from bench.servers import redis_server
from channels import platform_state
from channels.desk_reports import DeskReports
from channels.platform_media import answer_text
from channels.wecom import CallbackError, open_callback
from channels.wecom_kf import TEXTS, WeComKfInput, split_text
from tests.chat_platforms import AttachmentDesk, picture
from tests.fake_wecom_kf import FakeKf
from tests.local_http import serve_in_thread
from tests.recording_desk import RecordingDesk
from tests.wecom_protocol import DOC_AES_KEY, DOC_CORP_ID, DOC_TOKEN, callback, kf_signal, text_message

KFID = "wkFAKE01"
SECRET = "kf-secret"
HOUR = 3600


class Clock:
    """The channel's clock, moved with the fake platform's."""

    def __init__(self, platform: FakeKf) -> None:
        self.platform = platform

    def __call__(self) -> float:
        return self.platform.now()


@pytest.fixture
def platform() -> FakeKf:
    return FakeKf(DOC_CORP_ID, SECRET, KFID, page_size=2).start_in_thread()


@pytest.fixture
def desk() -> RecordingDesk:
    return RecordingDesk().start_in_thread()


class Rasa:
    """What Rasa would be handed: the messages, and a way to answer through the channel."""

    def __init__(self) -> None:
        self.messages: List[UserMessage] = []

    async def __call__(self, message: UserMessage) -> None:
        self.messages.append(message)

    def texts(self) -> List[str]:
        return [m.text for m in self.messages]


OPEN: List[WeComKfInput] = []


@pytest.fixture(autouse=True)
async def close_channels():
    """Each test's channels stop their report task and close their stores."""
    yield
    while OPEN:
        channel = OPEN.pop()
        await channel.reports.close()
        await channel.state.close()


def make_channel(platform: FakeKf, desk: RecordingDesk, tmp_path, **options) -> WeComKfInput:
    """A channel on the fake platform, reporting to the recording desk, on the platform's clock."""
    reports = DeskReports(desk.url, desk.token, "wecom_kf", retry_max_seconds=0.2)
    channel = WeComKfInput(
        DOC_CORP_ID,
        SECRET,
        DOC_TOKEN,
        DOC_AES_KEY,
        api_base=platform.url,
        state_file=str(tmp_path / options.pop("state_name", "kf.sqlite")),
        reports=reports,
        clock=Clock(platform),
        **options,
    )
    OPEN.append(channel)
    return channel


async def pull(channel: WeComKfInput, platform: FakeKf, rasa: Rasa, token: str = "") -> None:
    """One callback's worth of work: the channel syncs with the callback's Token."""
    await channel.sync(KFID, token or platform.issue_callback_token(), channel.door(rasa))


async def until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def states(desk: RecordingDesk, sender: str) -> List[tuple]:
    return [(r["state"], r.get("reason")) for r in desk.of("delivery", sender)]


SENDER = f"{KFID}:wmMERCHANT1"


# --- the callback ----------------------------------------------------------------------


def test_text_is_split_between_characters_under_2048_bytes():
    parts = split_text("错" * 1000 + "😀" * 10)
    assert "".join(parts) == "错" * 1000 + "😀" * 10
    assert all(len(part.encode()) <= 2048 for part in parts) and len(parts) == 2
    assert split_text("短") == ["短"] and split_text("") == [""]


@given(text=st.text(max_size=3000), limit=st.integers(min_value=4, max_value=2048))
def test_split_text_keeps_every_character_within_the_byte_limit(text, limit):
    parts = split_text(text, limit)
    assert "".join(parts) == text
    assert all(len(part.encode("utf-8", errors="surrogatepass")) <= limit for part in parts)


def test_a_callback_is_a_signal_with_the_token_and_the_account(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    now = int(time.time())
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, kf_signal(KFID, "ENCtoken"), str(now))
    assert channel.signal(open_callback(channel.crypto, query, body, now)) == (KFID, "ENCtoken")
    # Another event of the app (or a plain text of a self-built app) is not a KF signal.
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, text_message("u", "hi", "1"), str(now))
    assert channel.signal(open_callback(channel.crypto, query, body, now)) is None


@pytest.mark.parametrize(
    "tamper, status",
    [
        (lambda q, b: ({**q, "msg_signature": "0" * 40}, b), 403),  # forged signature
        (lambda q, b: ({**q, "timestamp": str(int(q["timestamp"]) - 3600)}, b), 403),  # replayed an hour later
        (lambda q, b: (q, b"<xml><Encrypt>"), 400),  # malformed XML
        (lambda q, b: (q, b'{"Encrypt": "x"}'), 400),  # JSON, not XML
        (lambda q, b: (q, b"<xml>" + b"x" * 1024 * 1024 + b"</xml>"), 413),  # 1 MB body
    ],
)
def test_bad_callbacks_are_refused(platform, desk, tmp_path, tamper, status):
    channel = make_channel(platform, desk, tmp_path)
    now = int(time.time())
    query, body = tamper(*callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, kf_signal(KFID, "t"), str(now)))
    with pytest.raises(CallbackError) as refused:
        open_callback(channel.crypto, query, body, now)
    assert refused.value.status == status


def test_a_callback_for_another_corp_is_refused(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    now = int(time.time())
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, "wwANOTHERCORP", kf_signal(KFID, "t"), str(now))
    with pytest.raises(CallbackError) as refused:
        open_callback(channel.crypto, query, body, now)
    assert refused.value.status == 403


def test_a_signal_without_its_fields_is_a_clear_400(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    with pytest.raises(CallbackError) as refused:
        channel.signal(b"<xml><MsgType>event</MsgType><Event>kf_msg_or_event</Event></xml>")
    assert refused.value.status == 400


def test_the_credentials_block_makes_the_channel(tmp_path):
    channel = WeComKfInput.from_credentials(
        {
            "corp_id": DOC_CORP_ID,
            "secret": SECRET,
            "token": DOC_TOKEN,
            "encoding_aes_key": DOC_AES_KEY,
            "state_file": str(tmp_path / "kf.sqlite"),
            "handoff": "wecom",
            "servicer_userid": "zhangsan",
        }
    )
    assert isinstance(channel, WeComKfInput) and channel.api_base == "https://qyapi.weixin.qq.com"
    assert (channel.handoff, channel.servicer_userid) == ("wecom", "zhangsan")
    with pytest.raises(RasaException, match="wecom_kf input channel"):
        WeComKfInput.from_credentials(None)


# --- pulling ---------------------------------------------------------------------------


async def test_first_start_reads_past_the_backlog_and_a_retried_callback_is_answered_once(platform, desk, tmp_path):
    for number in range(5):  # yesterday's conversations: the platform keeps 3 days
        platform.customer_says("wmOLD", f"旧消息{number}", send_time=time.time() - 20 * HOUR)
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "pos机报1000咋整")
    token = platform.issue_callback_token()
    for _ in range(3):  # the platform retries a callback three times
        await pull(channel, platform, rasa, token)
    assert rasa.texts() == ["pos机报1000咋整"]
    [message] = rasa.messages
    assert message.sender_id == SENDER and message.input_channel == "wecom_kf"
    # Paged two at a time with has_more (and read once more for what came in while the
    # message was handled), and the cursor is where the log ends.
    assert platform.sync_calls == 3 + 1 + 1 + 1
    assert await channel.state.durable_get(f"cursor:{KFID}") == "c6"
    # The merchant's first message moved the session from new (0) to the bot (1).
    assert platform.session("wmMERCHANT1")["state"] == 1 and platform.session("wmOLD")["state"] == 0

    # A restart (same state file): the cursor is kept, nothing is answered again.
    again = make_channel(platform, desk, tmp_path)
    platform.customer_says("wmMERCHANT1", "还在吗")
    await pull(again, platform, rasa)
    assert rasa.texts() == ["pos机报1000咋整", "还在吗"]


async def test_a_failed_first_sync_still_reads_past_the_backlog_next_time(platform, desk, tmp_path):
    for number in range(3):
        platform.customer_says("wmOLD", f"旧消息{number}", send_time=time.time() - 20 * HOUR)
    reports = DeskReports(desk.url, desk.token, "wecom_kf", retry_max_seconds=0.2)
    # First deployment with a secret the platform refuses (40001): nothing can be pulled.
    refused = WeComKfInput(
        DOC_CORP_ID,
        "not-the-secret",
        DOC_TOKEN,
        DOC_AES_KEY,
        api_base=platform.url,
        state_file=str(tmp_path / "kf.sqlite"),
        reports=reports,
        clock=Clock(platform),
    )
    OPEN.append(refused)
    rasa = Rasa()
    await pull(refused, platform, rasa)
    assert rasa.texts() == [] and await refused.state.durable_get(f"cursor:{KFID}") is None

    fixed = make_channel(platform, desk, tmp_path)  # the secret fixed, the same state file
    platform.customer_says("wmMERCHANT1", "pos机报1000咋整")
    await pull(fixed, platform, rasa)
    assert rasa.texts() == ["pos机报1000咋整"]


async def test_malformed_news_is_skipped_and_the_rest_handled(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    await pull(channel, platform, rasa)  # the first sync: nothing there yet
    platform.log[KFID].extend(
        [
            "not an object",
            {"origin": 3, "text": {"content": "no msgid"}},
            {"msgid": "X1", "origin": 3, "msgtype": "text", "text": {"content": "no user"}},
            {"msgid": "X2", "origin": 3, "open_kfid": KFID, "external_userid": "wmM", "msgtype": "text", "text": "?"},
            {"msgid": "X3", "origin": 4, "msgtype": "event", "event": "not an object"},
            {"msgid": "X4", "origin": 4, "msgtype": "event", "event": {"event_type": "session_status_change", "change_type": 99}},
            {"msgid": "X5", "origin": 9},
        ]
    )
    platform.customer_says("wmMERCHANT1", "报1000")
    await pull(channel, platform, rasa)
    assert rasa.texts() == ["报1000"]
    assert await channel.state.durable_get(f"cursor:{KFID}") == f"c{len(platform.log[KFID])}"


async def test_card_numbers_are_masked_and_other_kinds_get_a_polite_answer(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "卡号 4111111111111111 刷不了")
    platform.customer_says("wmMERCHANT1", "", msgtype="voice")
    platform.customer_says("wmMERCHANT1", "", msgtype="weird_new_type")
    await pull(channel, platform, rasa)
    assert rasa.texts() == ["卡号 411111******1111 刷不了"]
    assert platform.texts_to("wmMERCHANT1") == [TEXTS["not_text"]] * 2


@pytest.fixture
def attachment_desk(monkeypatch) -> AttachmentDesk:
    """The desk's attachment endpoint (strict stand-in), where the channel's environment points."""
    stand_in = AttachmentDesk("attach-token")
    app = web.Application()
    stand_in.install(app)
    monkeypatch.setenv("DESK_URL", serve_in_thread(app))
    monkeypatch.setenv("DESK_API_TOKEN", stand_in.token)
    return stand_in


async def test_a_picture_is_fetched_with_media_get_and_attached_to_the_open_case(platform, desk, tmp_path, attachment_desk):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    png = picture("PNG")
    # No open case: fetched, offered, ignored by the desk; the merchant gets the short answer.
    platform.customer_says("wmMERCHANT1", "", msgtype="image", media=(png, "image/png"))
    await pull(channel, platform, rasa)
    assert platform.texts_to("wmMERCHANT1") == [answer_text("media_answer", "zh")]
    assert not attachment_desk.taken and platform.media_requests == 1
    # During a handoff: on the case, with its msgid, and the merchant is told; an expired
    # token is fetched again for media/get as for send_msg.
    attachment_desk.open_cases.add(SENDER)
    platform.expire_tokens()
    msgid = platform.customer_says("wmMERCHANT1", "", msgtype="image", media=(png, "image/png"))
    await pull(channel, platform, rasa)
    [taken] = attachment_desk.taken
    assert (taken["sender_id"], taken["channel"], taken["msgid"], taken["data"]) == (SENDER, "wecom_kf", msgid, png)
    assert platform.texts_to("wmMERCHANT1")[-1] == answer_text("image_to_agent", "zh")
    # A media_id the platform does not know (40007): nothing attached, the short answer all the same.
    platform.customer_says("wmMERCHANT1", "", msgtype="image")
    await pull(channel, platform, rasa)
    assert len(attachment_desk.taken) == 1
    assert platform.texts_to("wmMERCHANT1")[-1] == answer_text("media_answer", "zh")
    assert rasa.texts() == []  # pictures never reach NLU


async def test_menu_click_comes_back_as_the_button_payload(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "pos机报1000")
    await pull(channel, platform, rasa)
    await channel.get_output_channel().send_text_with_buttons(
        SENDER, "能用了吗？", [{"title": "✅ 好了", "payload": "/inform_fixed"}, {"title": "❌ 还是报1000", "payload": "/inform_not_fixed"}]
    )
    [menu] = platform.menus_to("wmMERCHANT1")
    assert menu["head_content"] == "能用了吗？" and [i["click"]["content"] for i in menu["list"]] == ["✅ 好了", "❌ 还是报1000"]
    platform.customer_says("wmMERCHANT1", "❌ 还是报1000", menu_id=menu["list"][1]["click"]["id"])
    platform.customer_says("wmMERCHANT1", "好了", menu_id="unknown-id")  # an old menu: its words
    await pull(channel, platform, rasa)
    assert rasa.texts()[1:] == ["/inform_not_fixed", "好了"]
    # Only the desk's messages are reported (in order: once this one is there, the menu's would be).
    await channel.get_output_channel().send_text_message(SENDER, "工程师的答复", desk_message_id=9)
    await until(lambda: len(desk.of("delivery")) == 1)
    assert states(desk, SENDER) == [("sent", None)] and desk.of("delivery")[0]["desk_message_id"] == 9


async def test_scene_param_of_the_contact_link_is_in_the_next_message_metadata(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.event("wmMERCHANT1", "enter_session", scene="pos", scene_param="898310048160123")
    platform.customer_says("wmMERCHANT1", "你好")
    platform.customer_says("wmMERCHANT1", "报1000")
    await pull(channel, platform, rasa)
    assert [m.metadata for m in rasa.messages] == [{"scene_param": "898310048160123"}, None]


# --- sending under the rules -----------------------------------------------------------


async def test_sixth_message_is_held_and_sent_when_the_merchant_writes_again(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "报1000")
    await pull(channel, platform, rasa)
    output = channel.get_output_channel()
    for number in range(6):
        await output.send_text_message(SENDER, f"第{number + 1}条", desk_message_id=100 + number)
    assert platform.texts_to("wmMERCHANT1") == [f"第{n}条" for n in range(1, 6)]
    assert not platform.refused  # our own count stopped the sixth, the platform was not tried
    await until(lambda: len(desk.of("delivery")) == 6)
    assert states(desk, SENDER)[-1] == ("held", "5 messages sent since the merchant last wrote")
    assert desk.of("delivery")[-1]["desk_message_id"] == 105

    platform.customer_says("wmMERCHANT1", "在吗")
    await pull(channel, platform, rasa)
    assert platform.texts_to("wmMERCHANT1")[-1] == "第6条"
    await until(lambda: len(desk.of("delivery")) == 7)
    assert desk.of("delivery")[-1]["state"] == "sent" and desk.of("delivery")[-1]["desk_message_id"] == 105
    assert rasa.texts() == ["报1000", "在吗"]  # the held message went out before Rasa's answer


async def test_after_48_hours_a_reply_is_held_until_the_merchant_writes(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "报1000")
    await pull(channel, platform, rasa)
    platform.advance(49 * HOUR)
    await channel.get_output_channel().send_text_message(SENDER, "工程师的答复", desk_message_id=7)
    assert platform.texts_to("wmMERCHANT1") == []
    await until(lambda: len(desk.of("delivery")) == 1)
    assert states(desk, SENDER) == [("held", "48-hour window closed")]
    platform.customer_says("wmMERCHANT1", "有结果吗")
    await pull(channel, platform, rasa)
    assert platform.texts_to("wmMERCHANT1") == ["工程师的答复"]
    await until(lambda: len(desk.of("delivery")) == 2)


async def test_platform_refusals_are_held_with_the_errcode_and_msg_send_fail_too(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "报1000")
    await pull(channel, platform, rasa)
    output = channel.get_output_channel()
    # A WeCom agent took the session in the WeCom client; no event reached us yet.
    platform.session("wmMERCHANT1")["state"] = 3
    await output.send_text_message(SENDER, "第一条", desk_message_id=1)
    assert platform.refused[-1][0] == 95018
    # The session ends (an event), the merchant writes again: state 0 → 1, the message goes.
    platform.event("wmMERCHANT1", "session_status_change", change_type=3, old_servicer_userid="zhangsan")
    platform.customer_says("wmMERCHANT1", "还是不行")
    await pull(channel, platform, rasa)
    assert platform.texts_to("wmMERCHANT1") == ["第一条"]
    # The end is reported with the agent who ended it (the desk's resolved_by).
    await until(lambda: desk.of("session", SENDER))
    assert [(r["state"], r["servicer_userid"]) for r in desk.of("session", SENDER)] == [(4, "zhangsan")]
    # Any other errcode holds the message too.
    platform.fail_next_send.append(45009)
    await output.send_text_message(SENDER, "第二条", desk_message_id=2)
    platform.customer_says("wmMERCHANT1", "？")
    await pull(channel, platform, rasa)
    # Accepted, then not delivered after all (msg_send_fail): held again, resent with a new msgid.
    first_msgid = platform.delivered[-1]["msgid"]
    platform.event("wmMERCHANT1", "msg_send_fail", fail_msgid=first_msgid, fail_type=0)
    platform.customer_says("wmMERCHANT1", "？？")
    await pull(channel, platform, rasa)
    await until(lambda: len(desk.of("delivery")) == 6)
    assert states(desk, SENDER) == [
        ("held", "errcode 95018: the session is with a WeCom agent"),
        ("sent", None),
        ("held", "errcode 45009"),
        ("sent", None),
        ("held", "msg_send_fail event"),
        ("sent", None),
    ]
    assert platform.texts_to("wmMERCHANT1") == ["第一条", "第二条", "第二条"]
    assert platform.delivered[-1]["msgid"] != first_msgid
    assert len(desk.of("session", SENDER)) == 1


async def test_a_desk_reply_sent_twice_reaches_the_merchant_once(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "报1000")
    await pull(channel, platform, rasa)
    for _ in range(2):  # the desk's relay retried
        await channel.get_output_channel().send_text_message(SENDER, "请重启终端", desk_message_id=42)
    assert platform.texts_to("wmMERCHANT1") == ["请重启终端"]
    await until(lambda: len(desk.of("delivery")) == 1)
    await asyncio.sleep(0.2)
    assert len(desk.of("delivery")) == 1  # the same report_id: the desk counts it once


async def test_expired_access_token_is_fetched_again(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "报1000")
    await pull(channel, platform, rasa)
    assert platform.token_requests == 1
    platform.expire_tokens()
    await channel.get_output_channel().send_text_message(SENDER, "您好")
    assert platform.texts_to("wmMERCHANT1") == ["您好"] and platform.token_requests == 2


# --- handoff in WeCom mode -------------------------------------------------------------


async def test_wecom_mode_hands_over_to_the_agent_or_the_pool_and_copies_agent_messages(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path, handoff="wecom", servicer_userid="zhangsan")
    rasa = Rasa()
    for user in ("wmA", "wmB"):
        platform.customer_says(user, "转人工")
    await pull(channel, platform, rasa)
    output = channel.get_output_channel()
    platform.on_duty.add("zhangsan")
    await output.send_custom_json(f"{KFID}:wmA", {"wecom_kf": "handoff"})
    platform.on_duty.clear()  # zhangsan went off duty: 95014, the pool instead
    await output.send_custom_json(f"{KFID}:wmB", {"wecom_kf": "handoff"})
    assert (platform.session("wmA")["state"], platform.session("wmA")["servicer"]) == (3, "zhangsan")
    assert platform.session("wmB")["state"] == 2
    # Nothing is sent while a WeCom agent has the session: the bot's words are dropped,
    # a desk agent's reply is kept for later.
    await output.send_text_message(f"{KFID}:wmA", "机器人")
    await output.send_text_message(f"{KFID}:wmA", "控制台的回复", desk_message_id=77)
    platform.agent_says("wmA", "zhangsan", "您好，我是张三")
    await pull(channel, platform, rasa)
    assert rasa.texts() == ["转人工", "转人工"]  # the agent's message never reaches Rasa
    await until(lambda: len(desk.reports) == 4)
    assert [(r["state"], r["servicer_userid"]) for r in desk.of("session")] == [(3, "zhangsan"), (2, None)]
    [agent] = desk.of("agent_message")
    assert (agent["sender_id"], agent["text"], agent["servicer_userid"]) == (f"{KFID}:wmA", "您好，我是张三", "zhangsan")
    assert states(desk, f"{KFID}:wmA") == [("held", "the session is with a WeCom agent")]
    assert desk.of("delivery", f"{KFID}:wmA")[0]["desk_message_id"] == 77
    assert platform.texts_to("wmA") == [] and not desk.refusals


async def test_desk_mode_keeps_the_session_with_the_bot(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "转人工")
    await pull(channel, platform, rasa)
    await channel.get_output_channel().send_custom_json(SENDER, {"wecom_kf": "handoff"})
    assert platform.session("wmMERCHANT1")["state"] == 1


# --- several processes sharing Redis ---------------------------------------------------


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server (scripts/system_packages.sh installs it), as the other Redis tests use."""
    service, url = redis_server(tmp_path)
    yield url
    service.stop()


async def test_two_channels_sharing_redis_sync_one_at_a_time_and_share_choices(desk, tmp_path, redis_url):
    platform = FakeKf(DOC_CORP_ID, SECRET, KFID, page_size=1, sync_delay=0.05).start_in_thread()
    first, second = (make_channel(platform, desk, tmp_path, redis_url=redis_url, state_name=f"{n}.sqlite") for n in (1, 2))
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "报1000")
    token = platform.issue_callback_token()
    # The same callback delivered to both processes at once (and retried).
    await asyncio.gather(pull(first, platform, rasa, token), pull(second, platform, rasa, token), pull(first, platform, rasa, token))
    assert rasa.texts() == ["报1000"] and platform.most_syncs_at_once == 1
    await first.get_output_channel().send_text_with_buttons(
        SENDER, "能用了吗？", [{"title": "✅ 好了", "payload": "/inform_fixed"}, {"title": "❌ 还是报1000", "payload": "/inform_not_fixed"}]
    )
    [menu] = platform.menus_to("wmMERCHANT1")
    platform.customer_says("wmMERCHANT1", "✅ 好了", menu_id=menu["list"][0]["click"]["id"])
    await pull(second, platform, rasa)
    assert rasa.texts() == ["报1000", "/inform_fixed"]
    # One access token for both; the quota is counted across both.
    assert platform.token_requests == 1
    for number in range(6):
        await (first, second)[number % 2].get_output_channel().send_text_message(SENDER, f"#{number}", desk_message_id=number)
    assert platform.texts_to("wmMERCHANT1")[1:] == [f"#{n}" for n in range(5)] and not platform.refused
    # Held in Redis by one process, sent by the other when the merchant writes.
    platform.customer_says("wmMERCHANT1", "？")
    await pull(first, platform, rasa)
    assert platform.texts_to("wmMERCHANT1")[-1] == "#5"
    await until(lambda: [r["state"] for r in desk.of("delivery")][-2:] == ["held", "sent"])


# --- failures on our side: nothing raised into Rasa, nothing lost ----------------------


def broken(error: Exception):
    """An async stand-in for a store or API call that fails like a Redis or network outage."""

    async def fail(*_args, **_kwargs):
        raise error

    return fail


async def test_a_failing_store_or_trans_never_raises_into_rasa_and_the_message_is_held(platform, desk, tmp_path, monkeypatch):
    channel = make_channel(platform, desk, tmp_path, handoff="wecom")
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "报1000")
    await pull(channel, platform, rasa)
    output = channel.get_output_channel()
    # The store goes down while an agent's reply goes out: held (in this process), reported held.
    with monkeypatch.context() as outage:
        outage.setattr(channel.state, "reserve_send", broken(ConnectionError("redis down")))
        outage.setattr(channel.state, "hold", broken(ConnectionError("redis down")))
        await output.send_text_message(SENDER, "工程师的答复", desk_message_id=5)
    assert platform.texts_to("wmMERCHANT1") == []
    await until(lambda: len(desk.of("delivery")) == 1)
    assert states(desk, SENDER) == [("held", "channel error: ConnectionError")]
    # A menu whose ids cannot be remembered still goes out (a click then reads as its words).
    with monkeypatch.context() as outage:
        outage.setattr(channel.state, "put", broken(ConnectionError("redis down")))
        await output.send_text_with_buttons(SENDER, "能用了吗？", [{"title": "好了", "payload": "/inform_fixed"}])
    assert platform.texts_to("wmMERCHANT1") == ["能用了吗？\n好了"]
    # The handoff's trans unreachable: the session stays with the bot, Rasa goes on.
    with monkeypatch.context() as outage:
        outage.setattr(channel.api, "trans", broken(OSError("connection reset")))
        await output.send_custom_json(SENDER, {"wecom_kf": "handoff"})
    assert platform.session("wmMERCHANT1")["state"] == 1
    # The merchant writes again: the reply kept in the process goes out, reported sent.
    platform.customer_says("wmMERCHANT1", "在吗")
    await pull(channel, platform, rasa)
    assert platform.texts_to("wmMERCHANT1")[-1] == "工程师的答复"
    await until(lambda: len(desk.of("delivery")) == 2)
    # The menu (the bot's own) is not reported; the agent's reply: held, then sent.
    assert [(r["state"], r["desk_message_id"]) for r in desk.of("delivery")] == [("held", 5), ("sent", 5)]
    assert not desk.refusals


class FailingOnce(Rasa):
    """Rasa whose first message fails (a tracker store or model error)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def __call__(self, message: UserMessage) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("tracker store unavailable")
        await super().__call__(message)


@pytest.mark.parametrize("where", ["rasa", "session"])
async def test_a_message_whose_handling_failed_is_handled_at_the_next_sync(platform, desk, tmp_path, monkeypatch, where):
    channel = make_channel(platform, desk, tmp_path)
    rasa: Rasa = FailingOnce() if where == "rasa" else Rasa()
    platform.customer_says("wmMERCHANT1", "报1000")
    platform.customer_says("wmMERCHANT1", "重启了")
    platform.customer_says("wmOTHER", "你好")
    with monkeypatch.context() as outage:
        if where == "session":  # kf/service_state/get unreachable for the first merchant
            service_state = channel.api.service_state

            async def first_unreachable(open_kfid: str, user: str):
                if user == "wmMERCHANT1":
                    raise OSError("connection reset")
                return await service_state(open_kfid, user)

            outage.setattr(channel.api, "service_state", first_unreachable)
        await pull(channel, platform, rasa)
    # The merchant's later message waits with the failed one; another merchant is answered.
    assert rasa.texts() == ["你好"]
    platform.customer_says("wmMERCHANT1", "在吗")
    await pull(channel, platform, rasa)
    assert rasa.texts() == ["你好", "报1000", "重启了", "在吗"]
    await pull(channel, platform, rasa)  # and only once
    assert rasa.texts() == ["你好", "报1000", "重启了", "在吗"]


async def test_a_pulled_page_is_handled_when_the_cursor_cannot_be_stored(platform, desk, tmp_path, monkeypatch):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    await pull(channel, platform, rasa)  # the first sync: the log is empty
    platform.customer_says("wmMERCHANT1", "报1000")
    store = channel.state.durable_put

    async def no_cursor(key, value, *args):
        if key.startswith("cursor:"):
            raise OSError("disk full")
        await store(key, value, *args)

    with monkeypatch.context() as outage:
        outage.setattr(channel.state, "durable_put", no_cursor)
        await pull(channel, platform, rasa)
    assert rasa.texts() == ["报1000"]
    # The next sync reads the page again from the older cursor: not answered twice.
    platform.customer_says("wmMERCHANT1", "在吗")
    await pull(channel, platform, rasa)
    assert rasa.texts() == ["报1000", "在吗"]
    assert await channel.state.durable_get(f"cursor:{KFID}") == f"c{len(platform.log[KFID])}"


def slow_handling(channel: WeComKfInput) -> "tuple[asyncio.Event, asyncio.Event]":
    """The channel's handling of the next merchant message waits (say for the platform's
    session call) until the second event is set; the first tells it has begun."""
    entered, go_on = asyncio.Event(), asyncio.Event()
    merchant_wrote = channel.courier.merchant_wrote

    async def slow(user: str) -> None:
        entered.set()
        await go_on.wait()
        await merchant_wrote(user)

    channel.courier.merchant_wrote = slow  # type: ignore[method-assign]
    return entered, go_on


async def test_two_processes_hand_one_merchants_messages_to_rasa_in_order(desk, tmp_path, redis_url):
    platform = FakeKf(DOC_CORP_ID, SECRET, KFID).start_in_thread()
    first, second = (make_channel(platform, desk, tmp_path, redis_url=redis_url, state_name=f"{n}.sqlite") for n in (1, 2))
    rasa = Rasa()
    await pull(first, platform, rasa)  # the log's start is known
    entered, go_on = slow_handling(first)
    platform.customer_says("wmMERCHANT1", "报1000")
    one = asyncio.create_task(pull(first, platform, rasa))
    await entered.wait()
    # The merchant's next message comes to the other process behind nginx.
    platform.customer_says("wmMERCHANT1", "重启了还是不行")
    two = asyncio.create_task(pull(second, platform, rasa))
    await asyncio.wait({two}, timeout=1.0)  # the chance to overtake that it must not take
    go_on.set()
    await asyncio.gather(one, two)
    assert rasa.texts() == ["报1000", "重启了还是不行"]


async def test_what_came_in_during_a_sync_is_pulled_before_its_lock_goes(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    await pull(channel, platform, rasa)
    entered, go_on = slow_handling(channel)
    platform.customer_says("wmMERCHANT1", "报1000")
    one = asyncio.create_task(pull(channel, platform, rasa))
    await entered.wait()
    # Its callback gave up waiting for the lock (or never came): this sync reads it.
    platform.customer_says("wmMERCHANT1", "重启了还是不行")
    go_on.set()
    await one
    assert rasa.texts() == ["报1000", "重启了还是不行"]


# --- the platform's small print --------------------------------------------------------


async def test_system_busy_is_tried_again_a_bounded_number_of_times(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    channel.api.busy_delays = (0.01, 0.01, 0.01)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "报1000")
    platform.busy_syncs = 2
    await pull(channel, platform, rasa)
    assert rasa.texts() == ["报1000"]
    output = channel.get_output_channel()
    platform.fail_next_send.extend([-1, -1])
    await output.send_text_message(SENDER, "请重启终端", desk_message_id=1)
    assert platform.texts_to("wmMERCHANT1") == ["请重启终端"]
    platform.fail_next_send.extend([-1] * 4)  # busy longer than the platform's 3 tries
    await output.send_text_message(SENDER, "第二条", desk_message_id=2)
    assert platform.texts_to("wmMERCHANT1") == ["请重启终端"] and not platform.fail_next_send
    await until(lambda: len(desk.of("delivery")) == 2)
    assert states(desk, SENDER) == [("sent", None), ("held", "send failed")]


async def test_menus_keep_within_the_platforms_limits(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    platform.customer_says("wmMERCHANT1", "报1000")
    await pull(channel, platform, rasa)
    head = "请检查：" + "网线是否插好，" * 80  # over 1,024 bytes
    buttons = [{"title": f"选项{n}" + ("很长" * 40 if n == 1 else ""), "payload": f"/choose{n}"} for n in range(1, 12)]
    await channel.get_output_channel().send_text_with_buttons(SENDER, head, buttons)
    assert not platform.refused
    texts = platform.texts_to("wmMERCHANT1")
    menus = platform.menus_to("wmMERCHANT1")
    assert len(menus) == 2 and [len(m["list"]) for m in menus] == [10, 1]
    assert all(len(m.get("head_content", "").encode()) <= 1024 for m in menus)
    # Nothing of the text is lost: the first part as text, the rest heads the menu.
    assert texts[0] + menus[0]["head_content"] == head
    first_item = menus[0]["list"][0]["click"]["content"]
    assert len(first_item.encode()) <= 128 and first_item.endswith("…") and first_item.startswith("选项1很长")
    # Every item still comes back as its payload.
    platform.customer_says("wmMERCHANT1", "选项11", menu_id=menus[1]["list"][0]["click"]["id"])
    await pull(channel, platform, rasa)
    assert rasa.texts()[-1] == "/choose11"


async def test_an_event_of_nobody_is_ignored(platform, desk, tmp_path):
    channel = make_channel(platform, desk, tmp_path)
    rasa = Rasa()
    await pull(channel, platform, rasa)
    platform.log[KFID].append(
        {
            "msgid": "E1",
            "origin": 4,
            "msgtype": "event",
            "open_kfid": KFID,
            "event": {"event_type": "session_status_change", "change_type": 3, "open_kfid": KFID},
        }
    )
    platform.customer_says("wmMERCHANT1", "报1000")
    await pull(channel, platform, rasa)
    assert rasa.texts() == ["报1000"]
    assert await channel.state.durable_get(f"session:{KFID}:None") is None
    # Reports reach the desk in order: once this one is there, a session report would be too.
    await channel.get_output_channel().send_text_message(SENDER, "您好", desk_message_id=1)
    await until(lambda: desk.of("delivery"))
    assert desk.of("session") == []


async def test_a_live_holder_keeps_the_shared_lock_past_its_expiry(tmp_path, redis_url, monkeypatch):
    # The sync holds the lock while Rasa answers a backlog; an expiry meant for a dead
    # holder must not let a second process in meanwhile (it would answer out of order).
    monkeypatch.setattr(platform_state, "LOCK_SECONDS", 3)
    holder, other = (platform_state.RedisState(redis_url, "kf") for _ in range(2))
    async with holder.lock("sync:kf1"):
        await asyncio.sleep(7)  # over twice the expiry
        with pytest.raises(LockError):
            async with other.redis.lock(other._key("lock:sync:kf1"), timeout=3, blocking_timeout=0.1):
                pass
    async with other.lock("sync:kf1"):  # released on exit: the other process gets it
        pass
    await holder.close()
    await other.close()

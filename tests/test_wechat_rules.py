"""The Official Account channel under the platform's send rules, against a fake
``message/custom/send`` that enforces them: 48 hours since the follower's last message
(45015), 5 messages since then (45047), a global token that a second fetch replaces.
What cannot go out is held, reported to the desk (a strict recording stand-in for the
desk's report endpoint) and sent when the merchant writes again.
"""

from __future__ import annotations

import asyncio
import time
from typing import List

import pytest

from bench.servers import redis_server
from channels.desk_reports import DeskReports
from channels.platform_state import TtlLru
from channels.wecom import IncomingText, WeChatInput
from tests.fake_official_account import HOUR, OfficialAccount
from tests.recording_desk import RecordingDesk
from tests.wecom_protocol import DOC_AES_KEY


@pytest.fixture
def account() -> OfficialAccount:
    return OfficialAccount()


@pytest.fixture
def desk() -> RecordingDesk:
    return RecordingDesk().start_in_thread()


OPEN: List[WeChatInput] = []


@pytest.fixture(autouse=True)
async def close_channels():
    yield
    while OPEN:
        channel = OPEN.pop()
        await channel.reports.close()
        await channel.state.close()


def wechat(account: OfficialAccount, desk: RecordingDesk, tmp_path, **options) -> WeChatInput:
    """An Official Account channel on the fake, reporting to the recording desk."""
    channel = WeChatInput(
        "tok",
        DOC_AES_KEY,
        "wxappid",
        "secret",
        api_base=account.url,
        state_file=str(tmp_path / options.pop("name", "wechat.sqlite")),
        reports=DeskReports(desk.url, desk.token, "wechat", retry_max_seconds=0.2),
        **options,
    )
    channel.state.clock = account.now  # the channel's clock moves with the platform's
    OPEN.append(channel)
    return channel


async def merchant_writes(channel: WeChatInput, account: OfficialAccount, openid: str, text: str, msg_id: str) -> List[str]:
    """A text callback, as the webhook hands it on: what Rasa would be given."""
    account.follower_writes(openid)
    given: List[str] = []

    async def rasa(message) -> None:
        given.append(message.text)

    await channel.handle(IncomingText(openid, text, msg_id), rasa)
    return given


async def until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def states(desk: RecordingDesk) -> List[tuple]:
    return [(r["state"], r.get("reason"), r["desk_message_id"]) for r in desk.of("delivery")]


async def test_a_reply_after_48_hours_is_held_and_goes_out_when_the_merchant_writes(account, desk, tmp_path):
    channel = wechat(account, desk, tmp_path)
    assert await merchant_writes(channel, account, "oMERCHANT", "pos机报1000", "1") == ["pos机报1000"]
    account.offset += 49 * HOUR
    await channel.get_output_channel().send_text_message("oMERCHANT", "工程师：请重启", desk_message_id=9)
    assert account.texts_to("oMERCHANT") == []
    await until(lambda: len(desk.reports) == 1)
    assert states(desk) == [("held", "48-hour window closed", 9)]
    await merchant_writes(channel, account, "oMERCHANT", "在吗", "2")
    assert account.texts_to("oMERCHANT") == ["工程师：请重启"]
    await until(lambda: len(desk.reports) == 2)
    assert states(desk)[1] == ("sent", None, 9) and not desk.refusals


async def test_the_sixth_message_and_every_refusal_are_held_with_the_reason(account, desk, tmp_path):
    channel = wechat(account, desk, tmp_path)
    await merchant_writes(channel, account, "oMERCHANT", "报1000", "1")
    output = channel.get_output_channel()
    for number in range(6):
        await output.send_text_message("oMERCHANT", f"#{number}", desk_message_id=number)
    assert account.texts_to("oMERCHANT") == [f"#{n}" for n in range(5)]
    await merchant_writes(channel, account, "oMERCHANT", "好的", "2")
    account.unauthorized = True  # the account lost the 客服接口 permission
    await output.send_text_message("oMERCHANT", "#6", desk_message_id=6)
    await until(lambda: len(desk.reports) == 8)
    assert states(desk)[4:] == [
        ("sent", None, 4),
        ("held", "5 messages sent since the merchant last wrote", 5),
        ("sent", None, 5),
        ("held", "errcode 48001", 6),
    ]
    account.unauthorized = False
    await merchant_writes(channel, account, "oMERCHANT", "？", "3")
    assert account.texts_to("oMERCHANT")[-2:] == ["#5", "#6"]


async def test_a_platform_limit_we_did_not_count_is_held_too(account, desk, tmp_path):
    channel = wechat(account, desk, tmp_path)
    # The merchant wrote before this process knew of it (a restart without Redis):
    # the channel tries, the platform refuses, the message is held.
    await channel.get_output_channel().send_text_message("oOTHER", "您好", desk_message_id=1)
    await until(lambda: len(desk.reports) == 1)
    assert states(desk) == [("held", "errcode 45015: 48-hour window closed", 1)]


async def test_choices_and_seen_messages_are_bounded_and_expire():
    clock = [0.0]
    memory = TtlLru(capacity=3, clock=lambda: clock[0])
    for number in range(5):
        memory.put(f"choices:{number}", [number], ttl=60)
    assert len(memory) == 3 and memory.get("choices:0") is None and memory.get("choices:4") == [4]
    clock[0] = 61
    assert memory.get("choices:4") is None


@pytest.mark.process  # a Redis server
async def test_two_processes_share_the_token_the_choices_and_the_seen_messages(account, desk, tmp_path):
    service, url = redis_server(tmp_path)
    try:
        first, second = (wechat(account, desk, tmp_path, redis_url=url, name=f"{n}.sqlite") for n in (1, 2))
        await merchant_writes(first, account, "oMERCHANT", "报1000", "1")
        await first.get_output_channel().send_text_with_buttons(
            "oMERCHANT",
            "能用了吗？",
            [{"title": "好了", "payload": "/inform_fixed"}, {"title": "还是报1000", "payload": "/inform_not_fixed"}],
        )
        assert await merchant_writes(second, account, "oMERCHANT", "2", "2") == ["/inform_not_fixed"]
        await second.get_output_channel().send_text_message("oMERCHANT", "好的")
        # One token for the account: a second fetch would have invalidated the first.
        assert account.token_requests == 1 and len(account.texts_to("oMERCHANT")) == 2
        assert await first.state.first_time("msg:77", 60) and not await second.state.first_time("msg:77", 60)
    finally:
        service.stop()


async def test_a_failing_store_never_raises_into_rasa_and_the_message_is_held(account, desk, tmp_path, monkeypatch):
    channel = wechat(account, desk, tmp_path)
    await merchant_writes(channel, account, "oMERCHANT", "报1000", "1")
    output = channel.get_output_channel()

    async def redis_down(*_args, **_kwargs):
        raise ConnectionError("redis down")

    with monkeypatch.context() as outage:  # the choices and the send ledger cannot be written
        outage.setattr(channel.state, "put", redis_down)
        outage.setattr(channel.state, "reserve_send", redis_down)
        await output.send_text_with_buttons("oMERCHANT", "能用了吗？", [{"title": "好了", "payload": "/inform_fixed"}], desk_message_id=3)
    assert account.texts_to("oMERCHANT") == []
    await until(lambda: len(desk.reports) == 1)
    assert states(desk) == [("held", "channel error: ConnectionError", 3)]
    await merchant_writes(channel, account, "oMERCHANT", "在吗", "2")
    assert account.texts_to("oMERCHANT") == ["能用了吗？\n\n1. 好了"]
    await until(lambda: len(desk.reports) == 2)
    assert states(desk)[1] == ("sent", None, 3) and not desk.refusals


async def test_a_store_that_cannot_read_the_choices_still_hands_the_words_to_rasa(account, desk, tmp_path, monkeypatch):
    channel = wechat(account, desk, tmp_path)

    async def redis_down(*_args, **_kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(channel.state, "get", redis_down)
    assert await merchant_writes(channel, account, "oMERCHANT", "2", "1") == ["2"]

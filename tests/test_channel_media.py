"""Voice, pictures and other media on WeChat, and Telegram / Slack behind the masking door,
against real processes on 127.0.0.1 (tests/harness/stack.py's Stack: desk, action
server, Rasa with the trained model) and fake platforms that hold to the platforms' rules
(tests/chat_platforms.py: tokens, media ids, HTTPS webhooks, bot tokens).

* a voice message with the platform's speech recognition is answered as the same words
  typed, stored masked, marked ``{"voice": true}``, and the desk's case transcript shows it
  after "🎤 " (Rasa's event broker -> the real desk);
* a picture, other voice, a file, a location, an unknown type: a short answer in the
  conversation's language, never silence; the picture is fetched from the media API with a
  valid token and media id and offered to the desk (a desk that does not take it costs
  the picture only, the merchant still gets the answer); during a handoff the real desk
  attaches it to the case as "[image]" and the merchant is told the agent has it (needs
  the desk's ``POST /api/channel/attachments``, branch desk);
* a 1 MB body, malformed XML: 4xx, nothing crashes, the channel keeps answering;
* Telegram (webhook update) and Slack (event signed with the signing secret, Slack's v0
  algorithm): a card number is masked before Rasa stores it; a bad or stale Slack
  signature is refused; an agent's reply through Rasa's API (``output_channel=latest``)
  reaches the Telegram chat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from aiohttp import web

from channels.platform_media import answer_text
from tests.chat_platforms import OfficialAccount, SlackWebApi, TelegramBotApi, picture, serve_in_thread
from tests.harness.http import http, raw
from tests.harness.processes import ROOT, wait_until
from tests.harness.stack import RASA_TOKEN, Stack, post_callback
from tests.wecom_protocol import DOC_AES_KEY, DOC_TOKEN, callback, media_message, text_message

APP_ID, APP_SECRET = "wxmediaapp", "oa-secret"
TELEGRAM_TOKEN, TELEGRAM_BOT = "123456:telegram-test-token", "pos1000_bot"
SLACK_TOKEN, SLACK_SECRET = "xoxb-slack-test-token", "8f742231b10e8888abcd99yyyzzz85a5"
CARD = "6222 0202 0000 0000 006"  # Luhn-valid 19 digits, in groups
CARD_DIGITS = CARD.replace(" ", "")
CARD_MASKED = "622202******0006"


class Platforms:
    """The Official Account, Telegram's Bot API and Slack's Web API on one local server."""

    def __init__(self) -> None:
        self.wechat = OfficialAccount(APP_ID, APP_SECRET)
        self.telegram = TelegramBotApi(TELEGRAM_TOKEN, TELEGRAM_BOT)
        self.slack = SlackWebApi(SLACK_TOKEN)
        app = web.Application()
        for platform in (self.wechat, self.telegram, self.slack):
            platform.install(app)
        self.url = serve_in_thread(app)


@pytest.fixture(scope="module")
def platforms() -> Platforms:
    return Platforms()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, platforms) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("media")
    credentials = directory / "credentials.yml"
    credentials.write_text(
        (ROOT / "credentials.yml").read_text(encoding="utf-8")
        + f"""
channels.wecom.WeChatInput:
  token: {DOC_TOKEN}
  encoding_aes_key: {DOC_AES_KEY}
  app_id: {APP_ID}
  secret: {APP_SECRET}
  api_base: {platforms.url}
  state_file: {directory / "wechat_state.sqlite"}  # the channel's state, kept with the test's files
channels.masked_telegram_slack.MaskedTelegramInput:
  access_token: "{TELEGRAM_TOKEN}"
  verify: {TELEGRAM_BOT}
  webhook_url: https://pos.example/webhooks/telegram/webhook
  api_base: {platforms.url}
channels.masked_telegram_slack.MaskedSlackInput:
  slack_token: {SLACK_TOKEN}
  slack_signing_secret: {SLACK_SECRET}
  api_base: {platforms.url}/api/
""",
        encoding="utf-8",
    )
    running = Stack(directory, credentials)
    yield running
    running.stop()


def user_events(stack: Stack, sender: str) -> List[Dict[str, Any]]:
    return [e for e in stack.tracker(sender)["events"] if e["event"] == "user"]


def wechat(stack: Stack, plain: str) -> int:
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, APP_ID, plain, str(int(time.time())))
    return post_callback(stack, query, body, channel="wechat")


def openid() -> str:
    return f"o-{uuid.uuid4().hex[:12]}"


def msgid() -> str:
    return str(uuid.uuid4().int % 10**18)


# --- voice ------------------------------------------------------------------------------


def test_voice_with_recognition_is_answered_as_typed_masked_and_marked_for_the_agent(stack, platforms):
    typed, spoken = openid(), openid()
    auth = {"Authorization": f"Bearer {stack.desk.token}"}
    case = http(
        "POST", f"{stack.desk.url}/api/escalations", {"sender_id": spoken, "channel": "wechat", "language": "zh", "summary": "voice"}, auth
    )

    words = f"pos机报1000怎么办 卡号{CARD}"
    assert wechat(stack, text_message(typed, words, msgid(), to="gh_test")) == 200
    assert wechat(stack, media_message(spoken, "voice", msgid(), to="gh_test", MediaId="v1", Format="amr", Recognition=words)) == 200
    wait_until(lambda: len(platforms.wechat.texts(typed)) >= 2 and len(platforms.wechat.texts(spoken)) >= 2, 60)
    time.sleep(1)  # the bot's answers to one message come together
    assert platforms.wechat.texts(spoken) == platforms.wechat.texts(typed)  # the same answer as for the text
    assert platforms.wechat.texts(spoken)[0].startswith("出现1000，按这四步排查")

    [heard] = user_events(stack, spoken)
    assert heard["text"] == f"pos机报1000怎么办 卡号{CARD_MASKED}"
    assert heard["metadata"]["voice"] is True
    assert "voice" not in (user_events(stack, typed)[0].get("metadata") or {})

    def merchant_lines() -> List[str]:
        detail = http("GET", f"{stack.desk.url}/api/escalations/{case['id']}", headers=auth)
        return [m["text"] for m in detail["transcript"] if m["kind"] == "merchant"]

    wait_until(lambda: merchant_lines(), 30)
    assert merchant_lines() == [f"🎤 pos机报1000怎么办 卡号{CARD_MASKED}"]
    assert CARD_DIGITS not in json.dumps(stack.tracker(spoken), ensure_ascii=False).replace(" ", "")


# --- pictures and other media -------------------------------------------------------------


def test_a_picture_gets_a_polite_answer_in_chinese_and_is_fetched_for_the_desk(stack, platforms):
    merchant, media_id = openid(), f"MEDIA_{uuid.uuid4().hex[:8]}"
    platforms.wechat.media[media_id] = (picture("JPEG", 32), "image/jpeg")
    image = media_message(merchant, "image", msgid(), to="gh_test", PicUrl="http://127.0.0.1:9/x.jpg", MediaId=media_id)
    for _ in range(3):  # the platform's retries: one answer
        assert wechat(stack, image) == 200
    wait_until(lambda: platforms.wechat.texts(merchant), 30)
    time.sleep(2)
    # No open case here, so the desk does not keep the picture: the merchant is asked for words.
    assert platforms.wechat.texts(merchant) == [answer_text("media_answer", "zh")]
    fetched = [r for r in platforms.wechat.media_requests if r["media_id"] == media_id]
    assert len(fetched) == 1 and fetched[0]["access_token"] in platforms.wechat.valid_tokens
    assert user_events(stack, merchant) == []  # nothing went to the model


def test_a_picture_during_a_handoff_is_attached_to_the_case_and_the_merchant_told(stack, platforms):
    merchant, media_id, picture_msgid = openid(), f"MEDIA_{uuid.uuid4().hex[:8]}", msgid()
    png = picture("PNG", 48)
    platforms.wechat.media[media_id] = (png, "image/png")
    auth = {"Authorization": f"Bearer {stack.desk.token}"}
    case = http(
        "POST",
        f"{stack.desk.url}/api/escalations",
        {"sender_id": merchant, "channel": "wechat", "language": "zh", "summary": "picture"},
        auth,
    )
    image = media_message(merchant, "image", picture_msgid, to="gh_test", MediaId=media_id)
    assert wechat(stack, image) == 200
    wait_until(lambda: platforms.wechat.texts(merchant), 30)
    assert platforms.wechat.texts(merchant) == [answer_text("image_to_agent", "zh")]
    detail = http("GET", f"{stack.desk.url}/api/escalations/{case['id']}", headers=auth)
    [line] = [m for m in detail["transcript"] if m["kind"] == "merchant"]
    assert line["text"] == "[image]" and isinstance(line["attachment_id"], int)


def test_the_answer_follows_the_conversations_language(stack, platforms):
    merchant = openid()
    assert wechat(stack, text_message(merchant, "what does error 1000 mean", msgid(), to="gh_test")) == 200
    wait_until(lambda: platforms.wechat.texts(merchant), 60)
    assert stack.tracker(merchant)["slots"]["language"] == "en"
    count = len(platforms.wechat.texts(merchant))
    assert wechat(stack, media_message(merchant, "image", msgid(), to="gh_test", MediaId="MEDIA_UNKNOWN")) == 200
    wait_until(lambda: len(platforms.wechat.texts(merchant)) > count, 30)
    assert platforms.wechat.texts(merchant)[-1] == answer_text("media_answer", "en")


@pytest.mark.parametrize(
    "msg_type, fields",
    [
        ("voice", {"MediaId": "v2", "Format": "amr"}),  # no speech recognition
        ("file", {"Title": "log.txt", "FileKey": "k", "FileMd5": "m", "FileTotalLen": "9"}),
        ("location", {"Location_X": "31.23", "Location_Y": "121.47", "Scale": "15", "Label": "上海"}),
        ("link", {"Title": "t", "Description": "d", "Url": "http://127.0.0.1:9/"}),
        ("shortvideo", {"MediaId": "s1", "ThumbMediaId": "t1"}),
        ("hologram", {"Beam": "an unknown type"}),
    ],
)
def test_media_the_bot_cannot_read_gets_a_short_answer_never_silence(stack, platforms, msg_type, fields):
    merchant = openid()
    assert wechat(stack, media_message(merchant, msg_type, msgid(), to="gh_test", **fields)) == 200
    wait_until(lambda: platforms.wechat.texts(merchant), 30)
    assert platforms.wechat.texts(merchant) == [answer_text("media_answer", "zh")]
    assert user_events(stack, merchant) == []


def test_a_1mb_body_and_malformed_xml_are_refused_and_the_channel_keeps_answering(stack, platforms):
    query, _ = callback(DOC_TOKEN, DOC_AES_KEY, APP_ID, text_message("u", "x", "1"), str(int(time.time())))
    assert post_callback(stack, query, b"<xml>" + b"A" * 1_000_000 + b"</xml>", channel="wechat") == 413
    assert post_callback(stack, query, b"<xml><Encrypt>", channel="wechat") == 400
    merchant = openid()
    assert wechat(stack, media_message(merchant, "image", msgid(), to="gh_test", MediaId="M")) == 200
    wait_until(lambda: platforms.wechat.texts(merchant), 30)


# --- Telegram ------------------------------------------------------------------------------


def telegram_update(chat_id: int, text: str) -> bytes:
    now = int(time.time())
    return json.dumps(
        {
            "update_id": chat_id,
            "message": {
                "message_id": 1,
                "date": now,
                "text": text,
                "chat": {"id": chat_id, "type": "private", "first_name": "Li"},
                "from": {"id": chat_id, "is_bot": False, "first_name": "Li"},
            },
        }
    ).encode()


def test_telegram_card_numbers_are_masked_and_the_agents_reply_reaches_the_chat(stack, platforms):
    assert platforms.telegram.webhooks == ["https://pos.example/webhooks/telegram/webhook"]  # set at start-up
    chat = int(uuid.uuid4().int % 10**9)
    status, body = raw("POST", f"{stack.rasa_url}/webhooks/telegram/webhook", telegram_update(chat, f"pos机报1000咋整 卡号{CARD}"))
    assert (status, body) == (200, b"success")
    assert [e["text"] for e in user_events(stack, str(chat))] == [f"pos机报1000咋整 卡号{CARD_MASKED}"]
    assert platforms.telegram.texts(str(chat))[0].startswith("出现1000，按这四步排查")

    # An agent's reply, as the desk sends it through Rasa's API.
    url = f"{stack.rasa_url}/conversations/{chat}/tracker/events?output_channel=latest&execute_side_effects=true&token={RASA_TOKEN}"
    status, _ = raw("POST", url, json.dumps({"event": "bot", "text": "您好，我是客服小李"}).encode())
    assert status == 200
    wait_until(lambda: "您好，我是客服小李" in platforms.telegram.texts(str(chat)), 30)


# --- Slack ---------------------------------------------------------------------------------


def slack_request(text: str, user: str, timestamp: int = 0, secret: str = SLACK_SECRET) -> Tuple[bytes, Dict[str, str]]:
    """An Events API message event, signed as Slack signs it (v0: HMAC-SHA256 of v0:ts:body)."""
    body = json.dumps(
        {
            "token": "verification",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event": {
                "type": "message",
                "channel_type": "im",
                "channel": f"D{user}",
                "user": user,
                "text": text,
                "ts": f"{time.time():.6f}",
            },
            "authorizations": [{"user_id": "UBOT"}],
            "event_id": f"Ev{uuid.uuid4().hex[:8]}",
        }
    ).encode()
    stamp = str(timestamp or int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def test_slack_card_numbers_are_masked_before_rasa_stores_them(stack, platforms):
    user = f"U{uuid.uuid4().hex[:8].upper()}"
    body, headers = slack_request(f"pos机报1000咋整 卡号{CARD}", user)
    status, _ = raw("POST", f"{stack.rasa_url}/webhooks/slack/webhook", body, headers)
    assert status == 200
    wait_until(lambda: platforms.slack.texts(f"D{user}"), 60)
    assert [e["text"] for e in user_events(stack, user)] == [f"pos机报1000咋整 卡号{CARD_MASKED}"]
    assert platforms.slack.texts(f"D{user}")[0].startswith("出现1000，按这四步排查")


@pytest.mark.parametrize(
    "forge",
    [
        lambda body, headers: (body, {**headers, "X-Slack-Signature": "v0=" + "0" * 64}),
        lambda body, headers: (body.replace(b"pos", b"POS"), headers),  # body changed after signing
        lambda body, headers: (body, {k: v for k, v in headers.items() if k != "X-Slack-Signature"}),
        lambda body, headers: slack_request("pos机报1000咋整", "UFORGED", secret="another-secret"),
        lambda body, headers: slack_request("pos机报1000咋整", "UFORGED", timestamp=int(time.time()) - 600),
    ],
)
def test_slack_requests_without_a_valid_signature_are_refused(stack, platforms, forge):
    body, headers = forge(*slack_request("pos机报1000咋整", "UFORGED"))
    status, answer = raw("POST", f"{stack.rasa_url}/webhooks/slack/webhook", body, headers)
    assert status == 400 and b"X-Slack-Signature" in answer
    assert user_events(stack, "UFORGED") == []

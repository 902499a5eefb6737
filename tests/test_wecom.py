"""WeCom / WeChat callbacks: signatures and ciphertexts from the published algorithm."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.wecom import (
    CallbackCrypto,
    CallbackError,
    WeChatApi,
    WeChatInput,
    WeComInput,
    parse_callback,
)
from channels.desk_reports import DeskReports
from channels.platform_media import answer_media, answer_text, conversation_language, offer_image
from channels.platform_state import platform_state
from common.images import image_type, looks_like
from common.transcript_text import heard_text, readable_messages
from tests.chat_platforms import AttachmentDesk, OfficialAccount, picture
from tests.wecom_protocol import (
    DOC_AES_KEY,
    DOC_CORP_ID,
    DOC_ECHO_PLAIN,
    DOC_ECHOSTR,
    DOC_NONCE,
    DOC_SIGNATURE,
    DOC_TIMESTAMP,
    DOC_TOKEN,
    callback,
    media_message,
    sign,
    text_message,
)

NOW = 1764036000


def channel(api_base="http://127.0.0.1:9") -> WeComInput:
    return WeComInput(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, "secret", "1000002", api_base)


def test_published_example_verifies_the_url():
    assert sign(DOC_TOKEN, DOC_TIMESTAMP, DOC_NONCE, DOC_ECHOSTR) == DOC_SIGNATURE
    query = {"msg_signature": DOC_SIGNATURE, "timestamp": DOC_TIMESTAMP, "nonce": DOC_NONCE, "echostr": DOC_ECHOSTR}
    assert channel().verify_url(query) == DOC_ECHO_PLAIN


def test_forged_url_verification_is_refused():
    query = {"msg_signature": "0" * 40, "timestamp": DOC_TIMESTAMP, "nonce": DOC_NONCE, "echostr": DOC_ECHOSTR}
    with pytest.raises(CallbackError) as refused:
        channel().verify_url(query)
    assert refused.value.status == 403


def test_text_callback_is_decrypted():
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, text_message("zhangsan", "pos机报1000咋整", "101"), str(NOW))
    incoming = parse_callback(channel().crypto, query, body, NOW)
    assert (incoming.user, incoming.text, incoming.msg_id) == ("zhangsan", "pos机报1000咋整", "101")


def test_events_are_not_answered():
    event = (
        f"<xml><ToUserName>{DOC_CORP_ID}</ToUserName><FromUserName>zhangsan</FromUserName>"
        "<MsgType>event</MsgType><Event>enter_agent</Event></xml>"
    )
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, event, str(NOW))
    assert parse_callback(channel().crypto, query, body, NOW) is None


@pytest.mark.parametrize(
    "tamper, status",
    [
        (lambda q, b: ({**q, "msg_signature": "f" * 40}, b), 403),  # forged signature
        (lambda q, b: (q, b.replace(b"Encrypt><![CDATA[", b"Encrypt><![CDATA[A")), 403),  # altered ciphertext
        (lambda q, b: ({**q, "timestamp": str(NOW - 3600)}, b), 403),  # a replay an hour later
        (lambda q, b: ({**q, "timestamp": "abc"}, b), 403),
        (lambda q, b: (q, b"<xml><nothing/></xml>"), 400),
        (lambda q, b: (q, b"not xml at all"), 400),
        (lambda q, b: (q, b"<xml>" + b"x" * 70_000 + b"</xml>"), 413),
    ],
)
def test_bad_callbacks_are_refused(tamper, status):
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, text_message("u", "hi", "1"), str(NOW))
    query, body = tamper(query, body)
    with pytest.raises(CallbackError) as refused:
        parse_callback(channel().crypto, query, body, NOW)
    assert refused.value.status == status


def test_message_for_another_receiver_is_refused():
    plain = text_message("u", "hi", "1")
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, "another-corp", plain, str(NOW))
    with pytest.raises(CallbackError) as refused:
        parse_callback(channel().crypto, query, body, NOW)
    assert refused.value.status == 403


def test_undecryptable_payload_is_a_clear_400():
    crypto = CallbackCrypto(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID)
    for garbage in ("%%%not-base64%%%", "QUJD"):
        with pytest.raises(CallbackError) as refused:
            crypto.decrypt(garbage)
        assert refused.value.status == 400


async def test_same_msg_id_is_handled_once_and_the_memory_is_bounded():
    state = channel().state
    state.memory._capacity = 2
    seen = [await state.first_time(f"msg:{i}", 60) for i in ("1", "1", "2", "3", "1")]
    assert seen == [True, False, True, True, True] and len(state.memory) == 2


async def test_numbered_choice_becomes_the_button_payload():
    wecom = channel()
    await wecom.state.put("choices:u", ["/inform_fixed", "/inform_not_fixed"], 60)
    assert await wecom.as_text("u", " 2 ") == "/inform_not_fixed"
    assert await wecom.as_text("u", "3") == "3" and await wecom.as_text("other", "1") == "1"


class FakePlatform:
    """The platform's token and send-message endpoints on 127.0.0.1."""

    def __init__(self, token_path: str, send_path: str) -> None:
        self.sent, self.token_requests = [], []
        self.expire_next = False
        app = web.Application()
        app.router.add_get(token_path, self.token)
        app.router.add_post(send_path, self.send)
        self.server = TestServer(app, host="127.0.0.1")

    async def token(self, request):
        self.token_requests.append(dict(request.query))
        return web.json_response({"errcode": 0, "access_token": f"tok{len(self.token_requests)}", "expires_in": 7200})

    async def send(self, request):
        if self.expire_next:
            self.expire_next = False
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        self.sent.append({"token": request.query["access_token"], **(await request.json())})
        return web.json_response({"errcode": 0, "errmsg": "ok"})


async def test_replies_go_out_through_the_api_with_a_cached_refreshed_token():
    platform = FakePlatform("/cgi-bin/gettoken", "/cgi-bin/message/send")
    await platform.server.start_server()
    try:
        wecom = channel(str(platform.server.make_url("")))
        output = wecom.get_output_channel()
        await output.send_text_message("zhangsan", "您好")
        await output.send_text_with_buttons(
            "zhangsan",
            "能用了吗？",
            [{"title": "✅ 好了", "payload": "/inform_fixed"}, {"title": "❌ 还是报1000", "payload": "/inform_not_fixed"}],
        )
        platform.expire_next = True
        await output.send_text_message("zhangsan", "第三条")
    finally:
        await platform.server.close()
    assert platform.token_requests == [{"corpid": DOC_CORP_ID, "corpsecret": "secret"}] * 2
    assert [m["token"] for m in platform.sent] == ["tok1", "tok1", "tok2"]
    assert platform.sent[0] == {"token": "tok1", "touser": "zhangsan", "msgtype": "text", "agentid": "1000002", "text": {"content": "您好"}}
    assert platform.sent[1]["text"]["content"] == "能用了吗？\n\n1. ✅ 好了\n2. ❌ 还是报1000"
    assert await wecom.state.get("choices:zhangsan") == ["/inform_fixed", "/inform_not_fixed"]


async def test_wechat_official_account_variant(tmp_path):
    platform = FakePlatform("/cgi-bin/token", "/cgi-bin/message/custom/send")
    await platform.server.start_server()
    try:
        wechat = WeChatInput(
            "tok", DOC_AES_KEY, "wxappid", "secret", api_base=str(platform.server.make_url("")), state_file=str(tmp_path / "wechat.sqlite")
        )
        query = {"signature": sign("tok", "1409659589", "42"), "timestamp": "1409659589", "nonce": "42", "echostr": "hello"}
        assert wechat.verify_url(query) == "hello"
        with pytest.raises(CallbackError):
            wechat.verify_url({**query, "signature": "0" * 40})
        await wechat.get_output_channel().send_text_message("openid-1", "您好")
    finally:
        await platform.server.close()
    assert platform.token_requests == [{"grant_type": "client_credential", "appid": "wxappid", "secret": "secret"}]
    assert platform.sent == [{"token": "tok1", "touser": "openid-1", "msgtype": "text", "text": {"content": "您好"}}]


# --- what else a merchant sends: voice, pictures, files, locations ---------------------------


def parsed(plain: str):
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, plain, str(NOW))
    return parse_callback(channel().crypto, query, body, NOW)


def test_voice_with_the_platforms_recognition_is_read_as_text():
    incoming = parsed(media_message("u", "voice", "301", MediaId="m1", Format="amr", Recognition="pos机报1000怎么办"))
    assert (incoming.text, incoming.voice, incoming.media_type) == ("pos机报1000怎么办", True, None)


@pytest.mark.parametrize(
    "msg_type, fields, media_id",
    [
        ("voice", {"MediaId": "m2", "Format": "amr"}, "m2"),  # 接收语音识别结果 off
        ("voice", {"MediaId": "m3", "Format": "amr", "Recognition": "  "}, "m3"),  # nothing recognised
        ("image", {"PicUrl": "http://127.0.0.1:9/p.jpg", "MediaId": "m4"}, "m4"),
        ("video", {"MediaId": "m5", "ThumbMediaId": "t5"}, "m5"),
        ("shortvideo", {"MediaId": "m6", "ThumbMediaId": "t6"}, "m6"),
        ("location", {"Location_X": "31.2", "Location_Y": "121.4", "Scale": "15", "Label": "上海"}, None),
        ("link", {"Title": "t", "Description": "d", "Url": "http://127.0.0.1:9/"}, None),
        ("file", {"Title": "log.txt", "FileKey": "k", "FileMd5": "x", "FileTotalLen": "10"}, None),
        ("miniprogrampage", {"Title": "a type the bot has never heard of"}, None),
    ],
)
def test_messages_the_bot_cannot_read_are_marked_for_a_polite_answer(msg_type, fields, media_id):
    incoming = parsed(media_message("u", msg_type, "302", **fields))
    assert (incoming.user, incoming.text, incoming.voice) == ("u", "", False)
    assert (incoming.media_type, incoming.media_id) == (msg_type, media_id)


def test_a_media_message_without_sender_or_msgid_is_a_400():
    for plain, missing in (
        (media_message("u", "image", "1").replace("<MsgId>1</MsgId>", ""), "MsgId missing"),
        ("<xml><MsgType>image</MsgType><MsgId>1</MsgId></xml>", "FromUserName missing"),
    ):
        with pytest.raises(CallbackError) as refused:
            parsed(plain)
        assert (refused.value.status, str(refused.value)) == (400, missing)


def test_the_channels_own_answers_come_from_yaml_in_both_languages():
    for key in ("media_answer", "image_to_agent"):
        assert answer_text(key, "zh") != answer_text(key, "en")
        assert answer_text(key, None) == answer_text(key, "fr") == answer_text(key, "zh")  # Chinese by default
    assert "转人工" in answer_text("media_answer", "zh") and "agent" in answer_text("media_answer", "en")


def test_pictures_are_told_apart_by_their_bytes():
    assert image_type(picture("PNG")) == "image/png"
    assert image_type(picture("JPEG")) == "image/jpeg"
    assert image_type(picture("GIF")) == "image/gif"
    assert image_type(picture("WEBP")) == "image/webp"
    assert image_type(b"<html>not a picture</html>") is None and image_type(b"") is None
    # The desk's check of a posted picture is the same one (common/images.py).
    assert looks_like("image/webp", picture("WEBP")) and not looks_like("image/png", picture("JPEG"))
    assert not looks_like("image/webp", b"RIFF\0\0\0\0WEB") and not looks_like("text/html", b"<html>")


class MediaWorld:
    """The Official Account (token, media) and the strict desk, on one local server."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.platform = OfficialAccount("wxappid", "secret")
        self.desk = AttachmentDesk("desk-token")
        app = web.Application(client_max_size=8 * 1024 * 1024)
        self.platform.install(app)
        self.desk.install(app)
        self.server = TestServer(app, host="127.0.0.1")

    async def __aenter__(self) -> "MediaWorld":
        await self.server.start_server()
        self.url = str(self.server.make_url("")).rstrip("/")
        state = platform_state(None, self.directory / "media_state.sqlite", "wechat")
        self.api = WeChatApi(self.url, "wxappid", "secret", None, state)
        return self

    async def __aexit__(self, *_) -> None:
        await self.server.close()

    async def offer(self, media_id: str, sender: str = "openid-1", msgid: str = "501") -> bool:
        return await offer_image(self.url, self.api.access_token, media_id, sender, "wechat", msgid)


@pytest.fixture
def desk_env(monkeypatch):
    def point(url: str, token: str = "desk-token") -> None:
        monkeypatch.setenv("DESK_URL", url)
        monkeypatch.setenv("DESK_API_TOKEN", token)

    return point


async def test_a_picture_is_fetched_and_attached_to_the_open_case(tmp_path, desk_env):
    async with MediaWorld(tmp_path) as world:
        desk_env(world.url)
        png = picture("PNG", 64)
        world.platform.media["MEDIA_OK"] = (png, "image/jpeg")  # the platform's type is not trusted
        world.desk.open_cases.add("openid-1")
        assert await world.offer("MEDIA_OK") is True
        assert await world.offer("MEDIA_OK") is True  # the same msgid again (another process): kept once
        assert await world.offer("MEDIA_OK", sender="openid-2", msgid="502") is False  # no open case: ignored
    [taken] = world.desk.taken
    assert {k: taken[k] for k in ("sender_id", "channel", "msgid", "content_type")} == {
        "sender_id": "openid-1",
        "channel": "wechat",
        "msgid": "501",
        "content_type": "image/png",
    }
    assert taken["data"] == png and world.desk.refused == []
    assert world.platform.media_requests[0] == {"access_token": "oa-token-1", "media_id": "MEDIA_OK"}


async def test_an_expired_token_is_refreshed_once_for_the_media_api(tmp_path, desk_env):
    async with MediaWorld(tmp_path) as world:
        desk_env(world.url)
        world.platform.media["M"] = (picture("JPEG"), "image/jpeg")
        world.desk.open_cases.add("openid-1")
        assert await world.offer("M") is True
        world.platform.expire_tokens()
        assert await world.offer("M", msgid="503") is True
    assert [r["access_token"] for r in world.platform.media_requests] == ["oa-token-1", "oa-token-1", "oa-token-2"]
    assert [t["msgid"] for t in world.desk.taken] == ["501", "503"]


@pytest.mark.parametrize(
    "media, token, reason",
    [
        (None, "desk-token", "media API errcode 40007"),  # an unknown media_id
        ((picture("PNG", 1000, noise=True), "image/png"), "desk-token", "larger than 2097152 bytes"),  # not uploaded
        ((b"%PDF-1.4 not a picture", "image/jpeg"), "desk-token", "not a JPEG, PNG, GIF or WebP picture"),
        ((picture("PNG"), "image/png"), "wrong-token", "desk answered 401"),
    ],
)
async def test_a_picture_that_cannot_be_attached_is_logged_and_nothing_raises(tmp_path, desk_env, caplog, media, token, reason):
    async with MediaWorld(tmp_path) as world:
        desk_env(world.url, token)
        world.desk.open_cases.add("openid-1")
        if media is not None:
            world.platform.media["M"] = media
        with caplog.at_level(logging.WARNING, logger="channels.platform_media"):
            assert await world.offer("M") is False
    assert world.desk.taken == []
    assert reason in caplog.text and "wechat picture 501 of openid-1 not attached" in caplog.text


async def test_a_desk_that_is_not_there_costs_the_picture_only(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DESK_URL", raising=False)
    async with MediaWorld(tmp_path) as world:
        world.platform.media["M"] = (picture("PNG"), "image/png")
        with caplog.at_level(logging.WARNING, logger="channels.platform_media"):
            assert await world.offer("M") is False
    assert "DESK_URL is not set" in caplog.text


class RecordingOutput:
    """An output channel that records what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list = []

    async def send_text_message(self, recipient_id: str, text: str, **_) -> None:
        self.sent.append((recipient_id, text))


async def test_the_answer_says_the_agent_has_the_picture_only_when_the_desk_took_it():
    async def taken() -> bool:
        return True

    async def ignored() -> bool:
        return False

    output = RecordingOutput()
    await answer_media(output, "u", "en", taken)
    await answer_media(output, "u", "zh", ignored)
    await answer_media(output, "u", "zh")
    assert output.sent == [
        ("u", answer_text("image_to_agent", "en")),
        ("u", answer_text("media_answer", "zh")),
        ("u", answer_text("media_answer", "zh")),
    ]


def test_voice_is_marked_in_what_the_desk_reads():
    event = {"event": "user", "text": "卡号622202******0006 报1000", "metadata": {"voice": True}}
    assert heard_text(event, event["text"]) == "🎤 卡号622202******0006 报1000"
    assert heard_text({**event, "metadata": {}}, "x") == "x" and heard_text({"event": "user"}, "x") == "x"
    assert heard_text({**event, "metadata": {"voice": "yes"}}, "x") == "x"  # only the channel's own flag
    [(_, words)] = readable_messages([event])
    assert words == "🎤 卡号622202******0006 报1000"


async def test_the_channel_offers_a_picture_to_the_desk_and_answers_through_its_send_api(tmp_path, desk_env):
    async with MediaWorld(tmp_path) as world:
        desk_env(world.url)
        world.platform.media["MEDIA_1"] = (picture("GIF"), "image/gif")
        world.desk.open_cases.add("openid-9")
        wechat = WeChatInput(
            "tok",
            DOC_AES_KEY,
            "wxappid",
            "secret",
            api_base=world.url,
            state_file=str(tmp_path / "wechat_state.sqlite"),
            reports=DeskReports(None, None, "wechat"),
        )  # delivery reports: not this test's
        plain = media_message("openid-9", "image", "7001", to="gh_x", MediaId="MEDIA_1")
        query, body = callback("tok", DOC_AES_KEY, "wxappid", plain, str(NOW))
        incoming = parse_callback(wechat.crypto, query, body, NOW)

        async def to_rasa(message) -> None:
            raise AssertionError(f"a picture went to Rasa: {message.text!r}")

        # No Rasa agent here (a door-level test): the answer is in Chinese.
        await wechat.handle(incoming, to_rasa, agent=None)
    [taken] = world.desk.taken
    assert (taken["sender_id"], taken["channel"], taken["msgid"], taken["content_type"]) == ("openid-9", "wechat", "7001", "image/gif")
    assert world.platform.texts("openid-9") == [answer_text("image_to_agent", "zh")]


async def test_the_answers_language_is_the_conversations_in_rasas_tracker_store(caplog):
    from rasa.core.tracker_store import InMemoryTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import SlotSet

    from tests.harness.processes import ROOT

    store = InMemoryTrackerStore(Domain.load(str(ROOT / "domain")))
    tracker = await store.get_or_create_tracker("en-merchant")
    tracker.update(SlotSet("language", "en"))
    await store.save(tracker)
    agent = SimpleNamespace(tracker_store=store)  # what the channel reads of Rasa's Agent
    assert await conversation_language(agent, "en-merchant") == "en"
    assert await conversation_language(agent, "never-wrote") == "zh"  # no conversation yet

    class BrokenStore:
        async def retrieve(self, sender_id: str):
            raise ConnectionError("database gone")

    with caplog.at_level(logging.WARNING, logger="channels.platform_media"):
        assert await conversation_language(SimpleNamespace(tracker_store=BrokenStore()), "en-merchant") == "zh"
    assert "language of en-merchant unknown (ConnectionError): answering in Chinese" in caplog.text

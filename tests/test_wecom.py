"""WeCom / WeChat callbacks: signatures and ciphertexts from the published algorithm."""
from __future__ import annotations


import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.wecom import (
    CallbackCrypto,
    CallbackError,
    WeChatInput,
    WeComInput,
    parse_callback,
)
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
    event = (f"<xml><ToUserName>{DOC_CORP_ID}</ToUserName><FromUserName>zhangsan</FromUserName>"
             "<MsgType>event</MsgType><Event>enter_agent</Event></xml>")
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
        await output.send_text_with_buttons("zhangsan", "能用了吗？", [
            {"title": "✅ 好了", "payload": "/inform_fixed"}, {"title": "❌ 还是报1000", "payload": "/inform_not_fixed"}])
        platform.expire_next = True
        await output.send_text_message("zhangsan", "第三条")
    finally:
        await platform.server.close()
    assert platform.token_requests == [{"corpid": DOC_CORP_ID, "corpsecret": "secret"}] * 2
    assert [m["token"] for m in platform.sent] == ["tok1", "tok1", "tok2"]
    assert platform.sent[0] == {"token": "tok1", "touser": "zhangsan", "msgtype": "text",
                                "agentid": "1000002", "text": {"content": "您好"}}
    assert platform.sent[1]["text"]["content"] == "能用了吗？\n\n1. ✅ 好了\n2. ❌ 还是报1000"
    assert await wecom.state.get("choices:zhangsan") == ["/inform_fixed", "/inform_not_fixed"]


async def test_wechat_official_account_variant(tmp_path):
    platform = FakePlatform("/cgi-bin/token", "/cgi-bin/message/custom/send")
    await platform.server.start_server()
    try:
        wechat = WeChatInput("tok", DOC_AES_KEY, "wxappid", "secret", api_base=str(platform.server.make_url("")),
                             state_file=str(tmp_path / "wechat.sqlite"))
        query = {"signature": sign("tok", "1409659589", "42"), "timestamp": "1409659589", "nonce": "42", "echostr": "hello"}
        assert wechat.verify_url(query) == "hello"
        with pytest.raises(CallbackError):
            wechat.verify_url({**query, "signature": "0" * 40})
        await wechat.get_output_channel().send_text_message("openid-1", "您好")
    finally:
        await platform.server.close()
    assert platform.token_requests == [{"grant_type": "client_credential", "appid": "wxappid", "secret": "secret"}]
    assert platform.sent == [{"token": "tok1", "touser": "openid-1", "msgtype": "text", "text": {"content": "您好"}}]

"""WeCom (企业微信) and WeChat Official Account channels.

The platform calls the webhook:

* ``GET  /webhooks/<name>/webhook?msg_signature&timestamp&nonce&echostr`` once, to
  verify the URL: the signature is checked and the decrypted ``echostr`` returned;
* ``POST /webhooks/<name>/webhook?msg_signature&timestamp&nonce`` with
  ``<xml><Encrypt>…</Encrypt></xml>`` for every message.

Encryption is the platforms' published scheme: signature = SHA-1 of the sorted
``token, timestamp, nonce, Encrypt``; AES-256-CBC with key = base64(EncodingAESKey + "=")
and IV = its first 16 bytes, PKCS#7 padding to 32 bytes; plaintext = 16 random bytes +
4-byte big-endian length + message XML + receiver id (CorpID / AppID), which must match.
AES comes from the ``cryptography`` library.

The webhook answers at once with an empty body (the platform retries after 5 s, three
times, and the same ``MsgId`` is handled once); the bot's answer is sent through the
platform's send-message API with a cached, refreshed access token. Text messages have no
buttons, so button choices are listed as numbers and a reply of that number is taken as
the button. Card numbers are masked before Rasa sees the text (``CardMaskingMixin``).
A voice message with the platform's speech recognition (``Recognition``) is read as the
merchant's text, marked ``{"voice": true}`` in the message metadata; pictures, other voice,
files, locations, links and stickers get a short answer, and pictures go to the desk
(``channels/platform_media.py``).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text
from xml.etree import ElementTree

import aiohttp
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

from channels.masked import CardMaskingMixin
from channels.platform_media import DEFAULT_LANGUAGE, answer_media, conversation_language, offer_image

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_CLOCK_SKEW_SECONDS = 300  # older signed requests are replays
TOKEN_EXPIRED = {40001, 40014, 42001}
_ASCII_NUMBER = re.compile(r"[0-9]{1,12}")


class CallbackError(Exception):
    """The callback is forged, replayed or malformed; the webhook answers 4xx."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class CallbackCrypto:
    """Signature check and decryption of the platform's callbacks."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        key = base64.b64decode(encoding_aes_key + "=")
        if len(key) != 32:
            raise ValueError("EncodingAESKey must be the platform's 43-character key")
        self._token, self._key, self._receive_id = token, key, receive_id

    def signature(self, *parts: str) -> str:
        """SHA-1 of the token and the parts, sorted and joined."""
        joined = "".join(sorted([self._token, *parts]))
        return hashlib.sha1(joined.encode("utf-8", errors="surrogatepass")).hexdigest()

    def verify(self, signature: str, *parts: str) -> None:
        """Raise unless the signature is the one the platform would send."""
        # bytes: compare_digest refuses str with non-ASCII characters (a TypeError)
        supplied = (signature or "").encode("utf-8", errors="surrogatepass")
        if not hmac.compare_digest(self.signature(*parts).encode(), supplied):
            raise CallbackError(403, "bad signature")

    def decrypt(self, encrypted: str) -> str:
        """The message inside an ``Encrypt`` field (receiver id checked)."""
        try:
            data = base64.b64decode(encrypted, validate=True)
            decryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).decryptor()
            plain = decryptor.update(data) + decryptor.finalize()
            pad = plain[-1]
            if not 1 <= pad <= 32 or plain[-pad:] != bytes([pad]) * pad:
                raise ValueError("bad padding")
            content = plain[16:-pad]
            (length,) = struct.unpack(">I", content[:4])
            message, receiver = content[4 : 4 + length], content[4 + length :]
        except (ValueError, struct.error, IndexError) as error:
            raise CallbackError(400, f"cannot decrypt: {error}") from None
        if receiver.decode(errors="replace") != self._receive_id:
            raise CallbackError(403, "message is for another receiver")
        try:
            return message.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise CallbackError(400, "message is not UTF-8") from None


@dataclass
class IncomingText:
    """A merchant's message, decrypted: text, voice the platform recognised, or other media.

    ``voice``: the text is the platform's speech recognition of a voice message.
    ``media_type``: set (``image``, ``voice``, ``file``, ...) for a message the bot cannot
    read, with the platform's ``media_id`` when it has one; ``text`` is empty then.
    """

    user: str
    text: str
    msg_id: str
    voice: bool = False
    media_type: Optional[str] = None
    media_id: Optional[str] = None


class SeenMessages:
    """The last MsgIds handled (bounded), so platform retries are not answered twice."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._ids: "OrderedDict[str, None]" = OrderedDict()
        self._capacity = capacity

    def first_time(self, msg_id: str) -> bool:
        """True the first time an id is seen."""
        if msg_id in self._ids:
            return False
        self._ids[msg_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True


def parse_callback(crypto: CallbackCrypto, query: Dict[str, str], body: bytes, now: float) -> Optional[IncomingText]:
    """Check and decrypt one callback; None for messages the bot does not answer."""
    if len(body) > MAX_BODY_BYTES:
        raise CallbackError(413, "body too large")
    timestamp = query.get("timestamp", "")
    if not _ASCII_NUMBER.fullmatch(timestamp) or abs(now - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise CallbackError(403, "stale or missing timestamp")
    encrypted = _xml_field(body, "Encrypt")
    crypto.verify(query.get("msg_signature", ""), timestamp, query.get("nonce", ""), encrypted)
    message = crypto.decrypt(encrypted).encode()
    msg_type = _xml_field(message, "MsgType")
    if msg_type == "event":
        return None  # subscribe, enter_agent, menu clicks: nothing to answer
    user, msg_id = _xml_field(message, "FromUserName"), _xml_field(message, "MsgId")
    if msg_type == "text":
        return IncomingText(user=user, text=_xml_field(message, "Content"), msg_id=msg_id)
    # Voice with 接收语音识别结果 on carries the platform's recognition: read as typed.
    recognition = _xml_optional(message, "Recognition") if msg_type == "voice" else None
    if recognition and recognition.strip():
        return IncomingText(user=user, text=recognition, msg_id=msg_id, voice=True)
    # Pictures, other voice, files, locations, links, stickers, unknown types: answered politely.
    return IncomingText(user=user, text="", msg_id=msg_id, media_type=msg_type,
                        media_id=_xml_optional(message, "MediaId"))


def _xml_field(document: bytes, name: str) -> str:
    value = _xml_optional(document, name)
    if value is None:
        raise CallbackError(400, f"{name} missing")
    return value


def _xml_optional(document: bytes, name: str) -> Optional[str]:
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        raise CallbackError(400, "body is not XML") from None
    node = root.find(name)
    return None if node is None else node.text


class PlatformApi:
    """The platform's send-message API with a cached access token.

    Subclasses name the token and send endpoints; ``api_base`` is configurable so
    a deployment (or a test) can point it elsewhere.
    """

    token_path = "/cgi-bin/gettoken"
    send_path = "/cgi-bin/message/send"

    def __init__(self, api_base: str, app_id: str, secret: str, agent_id: Optional[str] = None) -> None:
        self._base = api_base.rstrip("/")
        self._app_id, self._secret, self._agent_id = app_id, secret, agent_id
        self._token: Optional[str] = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    def token_params(self) -> Dict[str, str]:
        """Query of the token request (WeCom: corpid + corpsecret)."""
        return {"corpid": self._app_id, "corpsecret": self._secret}

    def text_body(self, user: str, text: str) -> Dict[str, Any]:
        """JSON of a text message (WeCom: to an app member)."""
        return {"touser": user, "msgtype": "text", "agentid": self._agent_id, "text": {"content": text}}

    async def access_token(self, session: aiohttp.ClientSession, refresh: bool = False) -> str:
        """The cached token, fetched again when it is near expiry or rejected."""
        async with self._lock:
            if refresh or not self._token or time.monotonic() >= self._expires_at:
                async with session.get(self._base + self.token_path, params=self.token_params()) as reply:
                    body = await reply.json(content_type=None)
                if not body.get("access_token"):
                    raise RuntimeError(f"no access token: errcode {body.get('errcode')}")
                self._token = body["access_token"]
                self._expires_at = time.monotonic() + int(body.get("expires_in", 7200)) - 300
            return self._token

    async def send_text(self, user: str, text: str) -> None:
        """Send a text message; a rejected token is refreshed once."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(2):
                token = await self.access_token(session, refresh=attempt > 0)
                async with session.post(
                    self._base + self.send_path, params={"access_token": token}, json=self.text_body(user, text)
                ) as reply:
                    body = await reply.json(content_type=None)
                if body.get("errcode", 0) == 0:
                    return
                if body.get("errcode") not in TOKEN_EXPIRED:
                    break
            logger.error("%s send failed: %s", type(self).__name__, body)


class PlatformOutput(OutputChannel):
    """Bot messages out through the platform API; buttons become numbered choices."""

    def __init__(self, name: str, api: PlatformApi, choices: Dict[str, List[str]]) -> None:
        self._name, self._api, self._choices = name, api, choices

    def name(self) -> Text:
        return self._name

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        """A plain text message."""
        await self._api.send_text(recipient_id, text)

    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: List[Dict[str, Any]], **kwargs: Any
    ) -> None:
        """The text and the buttons as a numbered list; remember their payloads."""
        self._choices[recipient_id] = [button["payload"] for button in buttons]
        lines = [text, ""] + [f"{i}. {button['title']}" for i, button in enumerate(buttons, start=1)]
        await self._api.send_text(recipient_id, "\n".join(lines))


class PlatformInput(InputChannel):
    """The webhook both platforms share; subclasses set the API and the receiver id.

    credentials.yml::

        channels.wecom.WeComInput:
          token: ...               # 接收消息 Token
          encoding_aes_key: ...    # 接收消息 EncodingAESKey (43 characters)
          corp_id: ...             # 企业ID (the receiver id)
          agent_id: ...            # 应用 AgentId
          secret: ...              # 应用 Secret
          api_base: https://qyapi.weixin.qq.com
    """

    api_class = PlatformApi
    default_api_base = "https://qyapi.weixin.qq.com"

    @classmethod
    def name(cls) -> Text:
        return "wecom"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        if not credentials:
            cls.raise_missing_credentials_exception()
        return cls(
            token=str(credentials["token"]),
            encoding_aes_key=str(credentials["encoding_aes_key"]),
            app_id=str(credentials.get("corp_id") or credentials.get("app_id")),
            secret=str(credentials["secret"]),
            agent_id=str(credentials.get("agent_id") or ""),
            api_base=str(credentials.get("api_base") or cls.default_api_base),
        )

    def __init__(self, token: str, encoding_aes_key: str, app_id: str, secret: str,
                 agent_id: str = "", api_base: Optional[str] = None) -> None:
        self.crypto = CallbackCrypto(token, encoding_aes_key, app_id)
        self.api_base = api_base or self.default_api_base  # also the media API's (pictures)
        self.api = self.api_class(api_base or self.default_api_base, app_id, secret, agent_id or None)
        self.seen = SeenMessages()
        self.choices: Dict[str, List[str]] = {}
        self._tasks: set = set()

    def get_output_channel(self) -> OutputChannel:
        """Used by Rasa for agent replies and the resume (``output_channel=latest``)."""
        return PlatformOutput(self.name(), self.api, self.choices)

    def verify_url(self, query: Dict[str, str]) -> str:
        """The decrypted ``echostr`` of the URL verification."""
        echostr = query.get("echostr", "")
        self.crypto.verify(query.get("msg_signature", ""), query.get("timestamp", ""),
                           query.get("nonce", ""), echostr)
        return self.crypto.decrypt(echostr)

    def as_text(self, user: str, text: str) -> str:
        """A number answering a numbered list becomes that button's payload."""
        options = self.choices.get(user) or []
        stripped = text.strip()
        # ASCII digits only: "²".isdigit() is True but int("²") fails, and a
        # 5000-digit number is more than int() converts.
        if _ASCII_NUMBER.fullmatch(stripped) and len(stripped) <= 3 and 1 <= int(stripped) <= len(options):
            return options[int(stripped) - 1]
        return text

    async def answer_media(self, incoming: IncomingText, agent: Any = None) -> None:
        """A message the bot cannot read: a short answer (in the language of the conversation
        Rasa's ``agent`` holds, else Chinese); a picture is offered to the desk first."""
        language = await conversation_language(agent, incoming.user) if agent is not None else DEFAULT_LANGUAGE
        image = None
        if incoming.media_type == "image" and incoming.media_id:
            image = partial(offer_image, self.api_base, self.api.access_token, incoming.media_id,
                            incoming.user, self.name(), incoming.msg_id)
        await answer_media(self.get_output_channel(), incoming.user, language, image)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        hook = Blueprint(f"{self.name()}_webhook", __name__)

        @hook.route("/", methods=["GET"])
        async def health(_: Request) -> Any:
            return response.json({"status": "ok"})

        @hook.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> Any:
            try:
                return response.text(self.verify_url(dict(request.query_args)))
            except CallbackError as error:
                return response.text(str(error), status=error.status)

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> Any:
            try:
                incoming = parse_callback(self.crypto, dict(request.query_args), request.body or b"", time.time())
            except CallbackError as error:
                logger.warning("%s callback refused: %s", self.name(), error)
                return response.text(str(error), status=error.status)
            if incoming is not None and self.seen.first_time(incoming.msg_id):
                # Answer the platform now; the bot's reply goes out via the API.
                agent = getattr(request.app.ctx, "agent", None)  # Rasa's: the conversation's language
                task = asyncio.get_running_loop().create_task(self.handle(incoming, on_new_message, agent))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return response.text("")

        return hook

    async def handle(self, incoming: IncomingText, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                     agent: Any = None) -> None:
        """The merchant's message to Rasa; one the bot cannot read gets the channel's own answer."""
        if incoming.media_type is not None:
            await self.answer_media(incoming, agent)
            return
        message = UserMessage(
            self.as_text(incoming.user, incoming.text),
            self.get_output_channel(),
            incoming.user,
            input_channel=self.name(),
            metadata={"voice": True} if incoming.voice else None,
        )
        await on_new_message(message)


class WeComInput(CardMaskingMixin, PlatformInput):
    """企业微信 self-built app (credentials: token, encoding_aes_key, corp_id, agent_id, secret)."""


class WeChatApi(PlatformApi):
    """WeChat Official Account: client-credential token, customer-service messages."""

    token_path = "/cgi-bin/token"
    send_path = "/cgi-bin/message/custom/send"

    def token_params(self) -> Dict[str, str]:
        return {"grant_type": "client_credential", "appid": self._app_id, "secret": self._secret}

    def text_body(self, user: str, text: str) -> Dict[str, Any]:
        return {"touser": user, "msgtype": "text", "text": {"content": text}}


class WeChatInput(CardMaskingMixin, PlatformInput):
    """WeChat Official Account in safe mode (credentials: token, encoding_aes_key, app_id, secret).

    URL verification on an Official Account signs ``token, timestamp, nonce`` only
    (``signature``) and sends ``echostr`` in plain text.
    """

    api_class = WeChatApi
    default_api_base = "https://api.weixin.qq.com"

    @classmethod
    def name(cls) -> Text:
        return "wechat"

    def verify_url(self, query: Dict[str, str]) -> str:
        self.crypto.verify(query.get("signature", ""), query.get("timestamp", ""), query.get("nonce", ""))
        return query.get("echostr", "")

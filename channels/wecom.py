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

Handled msgids, the numbered choices and the access token are kept in Redis when the
channel has a ``redis_url`` (several Rasa processes), else in bounded in-process maps
(``channels.platform_state``). The Official Account reaches merchants under the
platform's rules (48 h window, 5 messages since the merchant last wrote): its messages go
through ``channels.platform_delivery.Courier``, which holds what cannot go out, reports
it to the desk and sends it when the merchant writes again. The self-built app
(``WeComInput``) reaches the enterprise's own staff only and sends without those rules.
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
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Dict, List, Optional, Text, Tuple
from xml.etree import ElementTree

import aiohttp
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

from channels.desk_reports import DeskReports
from channels.masked import CardMaskingMixin
from channels.platform_delivery import Courier
from channels.platform_media import DEFAULT_LANGUAGE, answer_media, conversation_language, offer_image
from channels.platform_state import LocalState, platform_state

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_CLOCK_SKEW_SECONDS = 300  # older signed requests are replays
TOKEN_EXPIRED = {40001, 40014, 42001}
SEEN_SECONDS = 3 * 24 * 3600  # the platforms keep (and may resend) 3 days of messages
CHOICES_SECONDS = 7 * 24 * 3600
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


def open_callback(crypto: CallbackCrypto, query: Dict[str, str], body: bytes, now: float) -> bytes:
    """The decrypted XML of one callback, after the size, replay and signature checks."""
    if len(body) > MAX_BODY_BYTES:
        raise CallbackError(413, "body too large")
    timestamp = query.get("timestamp", "")
    if not _ASCII_NUMBER.fullmatch(timestamp) or abs(now - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise CallbackError(403, "stale or missing timestamp")
    encrypted = xml_field(body, "Encrypt")
    crypto.verify(query.get("msg_signature", ""), timestamp, query.get("nonce", ""), encrypted)
    return crypto.decrypt(encrypted).encode()


def parse_callback(crypto: CallbackCrypto, query: Dict[str, str], body: bytes, now: float) -> Optional[IncomingText]:
    """Check and decrypt one callback; None for events (nothing to answer)."""
    message = open_callback(crypto, query, body, now)
    msg_type = xml_field(message, "MsgType")
    if msg_type == "event":
        return None  # subscribe, enter_agent, menu clicks: nothing to answer
    user, msg_id = xml_field(message, "FromUserName"), xml_field(message, "MsgId")
    if msg_type == "text":
        return IncomingText(user=user, text=xml_field(message, "Content"), msg_id=msg_id)
    # Voice with 接收语音识别结果 on carries the platform's recognition: read as typed.
    recognition = xml_optional(message, "Recognition") if msg_type == "voice" else None
    if recognition and recognition.strip():
        return IncomingText(user=user, text=recognition, msg_id=msg_id, voice=True)
    # Pictures, other voice, files, locations, links, stickers, unknown types: answered politely.
    return IncomingText(user=user, text="", msg_id=msg_id, media_type=msg_type, media_id=xml_optional(message, "MediaId"))


def verify_url(crypto: CallbackCrypto, query: Dict[str, str]) -> str:
    """The decrypted ``echostr`` of a WeCom URL verification (signed with ``msg_signature``)."""
    echostr = query.get("echostr", "")
    crypto.verify(query.get("msg_signature", ""), query.get("timestamp", ""), query.get("nonce", ""), echostr)
    return crypto.decrypt(echostr)


def xml_field(document: bytes, name: str) -> str:
    """The text of ``<name>`` under the root; 400 when the XML or the field is missing."""
    value = xml_optional(document, name)
    if value is None:
        raise CallbackError(400, f"{name} missing")
    return value


def xml_optional(document: bytes, name: str) -> Optional[str]:
    """The text of ``<name>`` under the root, None when it is absent; 400 when not XML."""
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        raise CallbackError(400, "body is not XML") from None
    node = root.find(name)
    return None if node is None else node.text


class PlatformApi:
    """The platform's API with one access token for all Rasa processes.

    The token is cached in the channel's state (Redis when set: an Official Account token
    is global and a second fetch invalidates the first) and fetched again, once, when the
    platform calls it expired (40001 / 40014 / 42001). ``api_base`` is configurable so a
    deployment (or a test) can point it elsewhere.
    """

    token_path = "/cgi-bin/gettoken"
    send_path = "/cgi-bin/message/send"

    def __init__(self, api_base: str, app_id: str, secret: str, agent_id: Optional[str] = None, state: Optional[LocalState] = None) -> None:
        self._base = api_base.rstrip("/")
        self._app_id, self._secret, self._agent_id = app_id, secret, agent_id
        self.state = state or platform_state(None, Path("var/wecom_state.sqlite"), "wecom")
        self.timeout = aiohttp.ClientTimeout(total=10)

    def token_params(self) -> Dict[str, str]:
        """Query of the token request (WeCom: corpid + corpsecret)."""
        return {"corpid": self._app_id, "corpsecret": self._secret}

    def text_body(self, user: str, text: str) -> Dict[str, Any]:
        """JSON of a text message (WeCom: to an app member)."""
        return {"touser": user, "msgtype": "text", "agentid": self._agent_id, "text": {"content": text}}

    async def access_token(self, session: aiohttp.ClientSession, rejected: Optional[str] = None) -> str:
        """The shared token; fetched when there is none or ``rejected`` is the one stored."""
        key = f"token:{self._app_id}"
        token = await self.state.get(key)
        if token and token != rejected:
            return token
        async with self.state.lock(key):
            token = await self.state.get(key)  # another process may have fetched it meanwhile
            if token and token != rejected:
                return token
            async with session.get(self._base + self.token_path, params=self.token_params()) as reply:
                body = await reply.json(content_type=None)
            if not isinstance(body, dict) or not body.get("access_token"):
                raise RuntimeError(f"no access token: errcode {body.get('errcode') if isinstance(body, dict) else body}")
            token = str(body["access_token"])
            await self.state.put(key, token, max(60, int(body.get("expires_in", 7200)) - 300))
            return token

    async def call(self, path: str, payload: Dict[str, Any]) -> Dict[str, Any]:
        """POST ``payload`` to ``path`` with the token; a rejected token is replaced once."""
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            rejected: Optional[str] = None
            for _ in range(2):
                token = await self.access_token(session, rejected)
                async with session.post(self._base + path, params={"access_token": token}, json=payload) as reply:
                    body = await reply.json(content_type=None)
                if not isinstance(body, dict):
                    return {"errcode": -1, "errmsg": "answer is not a JSON object"}
                if body.get("errcode", 0) not in TOKEN_EXPIRED:
                    return body
                rejected = token
            return body

    async def send_body(self, body: Dict[str, Any]) -> Tuple[int, str]:
        """Send one prepared message; the platform's (errcode, errmsg)."""
        answer = await self.call(self.send_path, body)
        return int(answer.get("errcode", 0) or 0), str(answer.get("errmsg", ""))

    async def send_text(self, user: str, text: str) -> Tuple[int, str]:
        """Send a text message; the platform's (errcode, errmsg)."""
        return await self.send_body(self.text_body(user, text))


class PlatformOutput(OutputChannel):
    """Bot messages out through the platform API; buttons become numbered choices.

    With a ``courier`` (Official Account) each message follows the platform's send rules
    and its fate is reported to the desk; without (self-built app) it is sent and a
    refusal logged.
    """

    def __init__(self, name: str, api: PlatformApi, courier: Optional[Courier] = None) -> None:
        self._name, self._api, self._courier = name, api, courier

    def name(self) -> Text:
        return self._name

    async def _send(self, recipient_id: str, text: str, desk_message_id: Optional[int]) -> None:
        if self._courier is None:
            try:
                errcode, errmsg = await self._api.send_text(recipient_id, text)
            except Exception as problem:  # noqa: BLE001 - logged; never raised into Rasa
                errcode, errmsg = -1, type(problem).__name__
            if errcode:
                logger.error("%s send failed: %s %s", self._name, errcode, errmsg)
            return
        msgid = f"d{desk_message_id}" if desk_message_id is not None else uuid.uuid4().hex
        await self._courier.deliver(
            {
                "user": recipient_id,
                "msgid": msgid,
                "text": text,
                "body": self._api.text_body(recipient_id, text),
                "desk_message_id": desk_message_id,
                "held": 0,
            }
        )

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        """A plain text message (``desk_message_id`` in kwargs for an agent's reply)."""
        await self._send(recipient_id, text, kwargs.get("desk_message_id"))

    async def send_text_with_buttons(self, recipient_id: Text, text: Text, buttons: List[Dict[str, Any]], **kwargs: Any) -> None:
        """The text and the buttons as a numbered list; remember their payloads (if the store
        cannot, the list goes out all the same and a number reads as the number)."""
        try:
            await self._api.state.put(f"choices:{recipient_id}", [button["payload"] for button in buttons], CHOICES_SECONDS)
        except Exception:  # noqa: BLE001 - logged; never raised into Rasa, the list is still sent
            logger.exception("%s choices of %s not remembered", self._name, recipient_id)
        lines = [text, ""] + [f"{i}. {button['title']}" for i, button in enumerate(buttons, start=1)]
        await self._send(recipient_id, "\n".join(lines), kwargs.get("desk_message_id"))


class SignedWebhookInput(InputChannel):
    """What the channels on the WeCom callback scheme share: the credentials every one has,
    the webhook's health check, URL verification and flush at shutdown, and the background
    work a callback starts. A subclass adds its ``settings`` and the callback (POST) route.
    """

    default_api_base = "https://qyapi.weixin.qq.com"
    crypto: CallbackCrypto
    state: LocalState
    _tasks: set

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        """The channel of its credentials.yml block (see the class docstring)."""
        if not credentials:
            cls.raise_missing_credentials_exception()
        assert credentials is not None  # the call above raises
        return cls(**cls.settings(credentials))

    @classmethod
    def settings(cls, credentials: Dict[Text, Any]) -> Dict[str, Any]:
        """The constructor's arguments of a credentials block (the ones every channel has)."""
        return {
            "token": str(credentials["token"]),
            "encoding_aes_key": str(credentials["encoding_aes_key"]),
            "secret": str(credentials["secret"]),
            "api_base": str(credentials.get("api_base") or cls.default_api_base),
            "redis_url": credentials.get("redis_url") or None,
            "state_file": credentials.get("state_file") or None,
        }

    def verify_url(self, query: Dict[str, str]) -> str:
        """The decrypted ``echostr`` of the URL verification."""
        return verify_url(self.crypto, query)

    async def close(self) -> None:
        """Before the process ends: what is still queued goes out, the store is closed."""
        await self.state.close()

    def in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` after the webhook answered (the platform retries after 5 s)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def webhook(self) -> Blueprint:
        """``/webhooks/<name>/`` with the health check and the URL verification (GET)."""
        hook = Blueprint(f"{self.name()}_webhook", __name__)

        @hook.listener("before_server_stop")
        async def flush(_app: Any, _loop: Any) -> None:
            await self.close()

        @hook.route("/", methods=["GET"])
        async def health(_: Request) -> Any:
            return response.json({"status": "ok"})

        @hook.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> Any:
            try:
                return response.text(self.verify_url(dict(request.query_args)))
            except CallbackError as error:
                return response.text(str(error), status=error.status)

        return hook


class PlatformInput(SignedWebhookInput):
    """The webhook both platforms share; subclasses set the API and the receiver id.

    credentials.yml::

        channels.wecom.WeComInput:
          token: ...               # 接收消息 Token
          encoding_aes_key: ...    # 接收消息 EncodingAESKey (43 characters)
          corp_id: ...             # 企业ID (the receiver id)
          agent_id: ...            # 应用 AgentId
          secret: ...              # 应用 Secret
          api_base: https://qyapi.weixin.qq.com
          redis_url: redis://...   # optional: state shared by several Rasa processes
          state_file: var/wecom_state.sqlite  # optional: else kept here
    """

    api_class = PlatformApi
    # Whether messages follow the merchant send rules and are reported to the desk.
    reports_deliveries = False

    @classmethod
    def name(cls) -> Text:
        return "wecom"

    @classmethod
    def settings(cls, credentials: Dict[Text, Any]) -> Dict[str, Any]:
        """The common settings, the receiver id (CorpID / AppID) and the app's AgentId."""
        return {
            **super().settings(credentials),
            "app_id": str(credentials.get("corp_id") or credentials.get("app_id")),
            "agent_id": str(credentials.get("agent_id") or ""),
        }

    def __init__(
        self,
        token: str,
        encoding_aes_key: str,
        app_id: str,
        secret: str,
        agent_id: str = "",
        api_base: Optional[str] = None,
        redis_url: Optional[str] = None,
        state_file: Optional[str] = None,
        reports: Optional[DeskReports] = None,
    ) -> None:
        self.crypto = CallbackCrypto(token, encoding_aes_key, app_id)
        self.api_base = api_base or self.default_api_base  # also the media API's (pictures)
        self.state = platform_state(redis_url, Path(state_file or f"var/{self.name()}_state.sqlite"), self.name())
        self.api = self.api_class(api_base or self.default_api_base, app_id, secret, agent_id or None, self.state)
        self.courier: Optional[Courier] = None
        if self.reports_deliveries:
            self.reports = reports or DeskReports.from_environment(self.name())
            self.courier = Courier(self.state, self.reports, self.api.send_body)
        self._tasks: set = set()

    def get_output_channel(self) -> OutputChannel:
        """Used by Rasa for agent replies and the resume (``output_channel=latest``)."""
        return PlatformOutput(self.name(), self.api, self.courier)

    async def close(self) -> None:
        """Delivery reports still queued go to the desk, then the store is closed."""
        if self.reports_deliveries:
            await self.reports.close()
        await super().close()

    async def as_text(self, user: str, text: str) -> str:
        """A number answering a numbered list becomes that button's payload."""
        try:
            options = await self.state.get(f"choices:{user}") or []
        except Exception:  # noqa: BLE001 - the store away: the merchant's words still reach the bot
            logger.exception("%s choices of %s not read", self.name(), user)
            return text
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
            image = partial(
                offer_image, self.api_base, self.api.access_token, incoming.media_id, incoming.user, self.name(), incoming.msg_id
            )
        await answer_media(self.get_output_channel(), incoming.user, language, image)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """``/webhooks/<name>/``: health, the URL verification and the callbacks."""
        hook = self.webhook()

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> Any:
            try:
                incoming = parse_callback(self.crypto, dict(request.query_args), request.body or b"", time.time())
            except CallbackError as error:
                logger.warning("%s callback refused: %s", self.name(), error)
                return response.text(str(error), status=error.status)
            if incoming is not None and await self.state.first_time(f"msg:{incoming.msg_id}", SEEN_SECONDS):
                # Answer the platform now; the bot's reply goes out via the API.
                agent = getattr(request.app.ctx, "agent", None)  # Rasa's: the conversation's language
                self.in_background(self.handle(incoming, on_new_message, agent))
            return response.text("")

        return hook

    async def handle(self, incoming: IncomingText, on_new_message: Callable[[UserMessage], Awaitable[Any]], agent: Any = None) -> None:
        """Held messages go out first (the merchant's message opened the window), then Rasa;
        a message the bot cannot read gets the channel's own answer instead."""
        if self.courier is not None:
            await self.courier.merchant_wrote(incoming.user)
        if incoming.media_type is not None:
            await self.answer_media(incoming, agent)
            return
        message = UserMessage(
            await self.as_text(incoming.user, incoming.text),
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
    reports_deliveries = True

    @classmethod
    def name(cls) -> Text:
        return "wechat"

    def verify_url(self, query: Dict[str, str]) -> str:
        self.crypto.verify(query.get("signature", ""), query.get("timestamp", ""), query.get("nonce", ""))
        return query.get("echostr", "")

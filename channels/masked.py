"""Card numbers masked at the door, before Rasa sees, stores or logs a message.

Every input channel of the assistant is one of Rasa's channels with
``CardMaskingMixin`` in front: the mixin wraps the ``on_new_message`` callback the
channel hands each ``UserMessage`` to, so the text reaching NLU, the tracker store and
the logs has Luhn-valid 13–19 digit numbers replaced by first 6 + ``******`` + last 4.

Use the subclasses (``MaskedRestInput``, ``MaskedSocketIOInput``; Telegram and Slack in
``channels/masked_telegram_slack.py``) in ``credentials.yml`` by module path; their ``name()`` stays
``rest`` / ``socketio``, so URLs and ``output_channel=latest`` are unchanged.

The same door also cleans what a merchant sends (``clean_text``): control characters
(other than newline and tab) and unpaired surrogates are dropped, and two kinds of
message get a polite answer from the channel instead of going to the model:

* nothing left to read (empty, whitespace or control characters only): "please type
  your question", in both languages (there are no words to tell the language by);
* longer than ``MAX_MESSAGE_CHARS`` (2000, about a page; WeCom's own limit is 2048
  bytes): "please send it in parts", in Chinese when the message has Chinese in it.
  Nothing is cut off silently, and the desk's transcript limit (4000) always holds.

The REST webhook answers a body that is not a JSON object with a string ``message``
and ``sender`` with 400 ``{"error": "..."}``; socket.io events of the wrong shape are
dropped with a warning (no stack trace, the server keeps running).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional, Text

import socketio
from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from rasa.core.channels.socketio import SocketIOInput, SocketIOOutput
from sanic import Blueprint, response
from sanic.request import Request

from channels.widget_mailbox import WidgetMailbox
from channels.widget_output import WidgetOutput
from channels.widget_store import delivery_store
from common.privacy import mask_card_numbers

logger = logging.getLogger(__name__)

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]

MAX_MESSAGE_CHARS = 2000
MAX_SENDER_CHARS = 255
# C0/C1 controls except tab and newline, DEL, and unpaired surrogates (JSON "\ud800").
_UNWANTED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_CJK = re.compile("[\u3400-\u9fff\uf900-\ufaff]")

EMPTY_ANSWER = '请直接输入您的问题，例如“POS机显示1000怎么办”。\nPlease type your question, for example "my terminal shows error 1000".'
TOO_LONG_ANSWER = {
    "zh": f"这条消息太长了（超过 {MAX_MESSAGE_CHARS} 字）。请分几条发送，或用一两句话描述问题。",
    "en": (
        f"That message is too long (over {MAX_MESSAGE_CHARS} characters). "
        "Please send it in parts, or describe the problem in a sentence or two."
    ),
}


def clean_text(text: str) -> str:
    """The message without control characters and unpaired surrogates, trimmed."""
    return _UNWANTED.sub("", text).strip()


def polite_refusal(text: str) -> Optional[str]:
    """The channel's own answer for a message the model should not get, else None."""
    if not text:
        return EMPTY_ANSWER
    if len(text) > MAX_MESSAGE_CHARS:
        return TOO_LONG_ANSWER["zh" if _CJK.search(text) else "en"]
    return None


def masking(on_new_message: OnNewMessage) -> OnNewMessage:
    """Wrap a channel's callback: clean and mask each message's text first.

    An empty or too long message is answered here, on the message's own output
    channel (so REST, socket.io and WeCom all get it), and not passed on.
    """

    async def masked(message: UserMessage) -> Any:
        if message.text is None:  # not a text message (Rasa's own use); nothing to mask
            return await on_new_message(message)
        text = clean_text(str(message.text))
        refusal = polite_refusal(text)
        if refusal is not None:
            logger.info("message of %d characters answered by the channel", len(text))
            if message.output_channel is not None:
                await message.output_channel.send_text_message(message.sender_id, refusal)
            return None
        message.text = mask_card_numbers(text)
        return await on_new_message(message)

    return masked


def rest_body_problem(body: Any) -> Optional[str]:
    """What is wrong with a REST webhook body, or None when it can be handled."""
    if not isinstance(body, dict):
        return "the body must be a JSON object with sender and message"
    sender = body.get("sender")
    if isinstance(sender, bool) or not isinstance(sender, (str, int)) or not clean_text(str(sender)):
        return "sender is required and must be a string"
    if len(str(sender)) > MAX_SENDER_CHARS:
        return f"sender is longer than {MAX_SENDER_CHARS} characters"
    if not isinstance(body.get("message"), str):
        return "message is required and must be a string"
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        return "metadata must be a JSON object"
    if body.get("input_channel") is not None and not isinstance(body["input_channel"], str):
        return "input_channel must be a string"
    return None


class CardMaskingMixin:
    """Masks card numbers in every message of the channel it is mixed into (put it first)."""

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """The channel's own blueprint, fed through the masking callback."""
        return super().blueprint(self.door(on_new_message))  # type: ignore[misc]

    def door(self, on_new_message: OnNewMessage) -> OnNewMessage:
        """What every message passes before Rasa: cleaning and masking."""
        return masking(on_new_message)


def _plain_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_SENDER_CHARS and clean_text(value) == value


class MaskedRestInput(CardMaskingMixin, RestInput):
    """Rasa's REST channel with card numbers masked and bodies checked."""

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """The REST blueprint; a body it cannot handle is a 400 with a JSON error."""
        hook = super().blueprint(on_new_message)

        @hook.middleware("request")
        async def check_body(request: Request) -> Optional[Any]:
            if request.method != "POST" or not request.path.rstrip("/").endswith("/webhook"):
                return None
            try:
                body = json.loads(request.body or b"")
            except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
                return response.json({"error": "the body must be a JSON object"}, status=400)
            problem = rest_body_problem(body)
            if problem:
                return response.json({"error": problem}, status=400)
            request.parsed_json = body  # what req.json returns from here on
            return None

        return hook

    async def _extract_sender(self, req: Request) -> Optional[Text]:
        return clean_text(str(req.json["sender"]))

    def _extract_message(self, req: Request) -> Optional[Text]:
        # Also masked here: the REST channel logs the raw text when handling fails.
        # Too long a message is refused by the channel before anything stores or logs it.
        text = super()._extract_message(req)
        if isinstance(text, str) and len(text) <= MAX_MESSAGE_CHARS * 2:
            return mask_card_numbers(text)
        return text


class MaskedSocketIOInput(CardMaskingMixin, SocketIOInput):
    """Rasa's socket.io channel (the website widget) with card numbers masked.

    An event whose data is not what the widget sends (an object; ``message`` a
    string; ``session_id`` a string; ``metadata`` an object) is dropped with a
    warning instead of raising inside the socket.io handler.

    Bot text goes out as markdown that the widget shows exactly as written
    (``channels.widget_output``), and with ``session_persistence`` a browser that
    reconnects is sent what it missed (``channels.widget_mailbox``; the delivery marks
    in ``$WIDGET_DELIVERY_FILE``, else ``delivery_file``, default ``var/widget_delivery.sqlite``,
    or in Redis with ``redis_url``). ``ping_interval`` / ``ping_timeout`` (seconds) set
    how soon engine.io notices a dead connection, on both ends.

    With several Rasa processes, set ``redis_url`` (deploy/credentials.yml): python-socketio's
    Redis manager then carries a message for a widget user — an agent's reply arriving at any
    process through Rasa's HTTP API — to the process that holds the user's connection.
    """

    redis_url: Optional[str] = None
    delivery_file: Path = Path("var/widget_delivery.sqlite")
    ping_interval: Optional[float] = None
    ping_timeout: Optional[float] = None
    mailbox: Optional[WidgetMailbox] = None

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "MaskedSocketIOInput":
        credentials = credentials or {}
        channel = super().from_credentials(credentials)
        channel.redis_url = credentials.get("redis_url") or None
        channel.delivery_file = Path(os.environ.get("WIDGET_DELIVERY_FILE") or credentials.get("delivery_file") or cls.delivery_file)
        for setting in ("ping_interval", "ping_timeout"):
            if credentials.get(setting) is not None:
                setattr(channel, setting, float(credentials[setting]))
        return channel  # type: ignore[return-value]

    def get_output_channel(self) -> Optional[WidgetOutput]:
        """The widget's output (``output_channel=latest`` of Rasa's HTTP API comes here)."""
        if self.sio is None:
            return super().get_output_channel()  # type: ignore[return-value]
        return WidgetOutput(self.sio, self.bot_message_evt, tagged=self.mailbox is not None)

    def door(self, on_new_message: OnNewMessage) -> OnNewMessage:
        """The widget's output for the answers (the channel's own polite ones too), then masking."""
        masked = masking(on_new_message)

        async def with_widget_output(message: UserMessage) -> Any:
            if self.sio is not None and type(message.output_channel) is SocketIOOutput:
                message.output_channel = self.get_output_channel()
            return await masked(message)

        return with_widget_output

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        hook = super().blueprint(on_new_message)
        if self.redis_url:
            # Swapped in before any client connects: the server initialises its manager on
            # the first connection.
            manager = socketio.AsyncRedisManager(self.redis_url)
            manager.set_server(self.sio)
            self.sio.manager = manager  # type: ignore[union-attr]
        if self.ping_interval is not None:
            self.sio.eio.ping_interval = self.ping_interval  # type: ignore[union-attr]
        if self.ping_timeout is not None:
            self.sio.eio.ping_timeout = self.ping_timeout  # type: ignore[union-attr]
        if self.session_persistence:
            self.mailbox = WidgetMailbox(self.sio, self.bot_message_evt, self.namespace, delivery_store(self.redis_url, self.delivery_file))
            self.mailbox.install(hook)
        namespace = self.namespace or "/"
        handlers: Dict[str, Callable] = self.sio.handlers.get(namespace, {})  # type: ignore[union-attr]
        for event, check in ((self.user_message_evt, self._message_problem), ("session_request", self._session_problem)):
            original = handlers.get(event)
            if original is not None:
                handlers[event] = self._guarded(event, original, check)
        return hook

    @staticmethod
    def _guarded(event: str, handler: Callable, check: Callable[[Any], Optional[str]]) -> Callable:
        async def guarded(sid: Text, data: Any = None) -> None:
            problem = check(data)
            if problem:
                logger.warning("socket.io %s from %s dropped: %s", event, sid, problem)
                return None
            return await handler(sid, data)

        return guarded

    def _message_problem(self, data: Any) -> Optional[str]:
        if not isinstance(data, dict):
            return "data must be an object"
        if not isinstance(data.get("message", ""), str):
            return "message must be a string"
        session_id = data.get("session_id")
        if session_id is not None and not _plain_id(session_id):
            return "session_id must be a short string"
        metadata = data.get(self.metadata_key)
        if metadata is not None and not isinstance(metadata, dict):
            return "metadata must be an object"
        return None

    @staticmethod
    def _session_problem(data: Any) -> Optional[str]:
        if data is None:
            return None
        if not isinstance(data, dict):
            return "data must be an object"
        session_id = data.get("session_id")
        if session_id is not None and not _plain_id(session_id):
            return "session_id must be a short string"
        return None

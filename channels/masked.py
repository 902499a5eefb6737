"""Card numbers masked at the door, before Rasa sees, stores or logs a message.

Every input channel of the assistant is one of Rasa's channels with
``CardMaskingMixin`` in front: the mixin wraps the ``on_new_message`` callback the
channel hands each ``UserMessage`` to, so the text reaching NLU, the tracker store and
the logs has Luhn-valid 13–19 digit numbers replaced by first 6 + ``******`` + last 4.

    class MaskedRestInput(CardMaskingMixin, RestInput): ...

Use the subclasses in ``credentials.yml`` by module path; their ``name()`` stays
``rest`` / ``socketio``, so URLs and ``output_channel=latest`` are unchanged.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional, Text

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from rasa.core.channels.socketio import SocketIOInput
from sanic import Blueprint
from sanic.request import Request

from support_desk.privacy import mask_card_numbers

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


def masking(on_new_message: OnNewMessage) -> OnNewMessage:
    """Wrap a channel's callback so each message's text is masked first."""

    async def masked(message: UserMessage) -> Any:
        if message.text:
            message.text = mask_card_numbers(message.text)
        return await on_new_message(message)

    return masked


class CardMaskingMixin:
    """Masks card numbers in every message of the channel it is mixed into (put it first)."""

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """The channel's own blueprint, fed through the masking callback."""
        return super().blueprint(masking(on_new_message))  # type: ignore[misc]


class MaskedRestInput(CardMaskingMixin, RestInput):
    """Rasa's REST channel with card numbers masked."""

    def _extract_message(self, req: Request) -> Optional[Text]:
        # Also masked here: the REST channel logs the raw text when handling fails.
        text = super()._extract_message(req)
        return mask_card_numbers(text) if isinstance(text, str) else text


class MaskedSocketIOInput(CardMaskingMixin, SocketIOInput):
    """Rasa's socket.io channel (the website widget) with card numbers masked."""

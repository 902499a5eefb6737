"""Rasa's Telegram and Slack channels behind the masking door, like every other channel.

``MaskedTelegramInput`` and ``MaskedSlackInput`` are Rasa's ``TelegramInput`` and
``SlackInput`` with ``CardMaskingMixin`` in front (card numbers masked, control characters
dropped, empty or too long messages answered by the channel), named in ``credentials.yml``
by module path; their ``name()`` stays ``telegram`` / ``slack``, so the webhook URLs and
``output_channel=latest`` are Rasa's usual ones.

Both take an optional ``api_base``: the Bot API server (Telegram, default
``https://api.telegram.org``) or the Web API base (Slack, default
``https://slack.com/api/``), so a deployment behind a proxy, or a test, can point it
elsewhere.

Telegram: Rasa's channel sets the webhook inside ``get_output_channel`` with
``asyncio.run``, which fails when Rasa's HTTP API asks for the output channel from its
running loop (an agent's reply with ``output_channel=latest``). Here the webhook is set
once, when the channel's blueprint is made at start-up, and ``get_output_channel`` only
builds a client.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional, Text

from aiogram.bot.api import TelegramAPIServer
from aiogram.utils.exceptions import TelegramAPIError
from rasa.core.channels.channel import InputChannel, OutputChannel
from rasa.core.channels.slack import SlackBot, SlackInput
from rasa.core.channels.telegram import TelegramInput, TelegramOutput
from rasa.shared.exceptions import RasaException
from sanic import Blueprint
from slack_sdk.web.async_client import AsyncWebClient

from channels.masked import CardMaskingMixin, OnNewMessage


class MaskedTelegramInput(CardMaskingMixin, TelegramInput):
    """Rasa's Telegram channel with card numbers masked (credentials: access_token, verify,
    webhook_url, optional api_base)."""

    api_base: Optional[str] = None
    _bot: Optional[TelegramOutput] = None

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        """Rasa's Telegram credentials plus ``api_base``."""
        channel = super().from_credentials(credentials)
        channel.api_base = (credentials or {}).get("api_base") or None  # type: ignore[attr-defined]
        return channel

    def get_output_channel(self) -> TelegramOutput:
        """The channel's one Bot API client for the answers (the webhook is not set again).

        One: each aiogram client keeps an HTTP session, and Rasa asks for an output
        channel on every reply sent through its HTTP API."""
        if self._bot is None:
            self._bot = self._new_bot()
        return self._bot

    def _new_bot(self) -> TelegramOutput:
        bot = TelegramOutput(self.access_token)
        if self.api_base:
            bot.server = TelegramAPIServer.from_base(self.api_base)
        return bot

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """Set the webhook once (start-up, no loop running yet), then Rasa's blueprint, masked."""
        try:
            asyncio.run(self._set_webhook())
        except TelegramAPIError as error:
            raise RasaException("Failed to set channel webhook: " + str(error)) from error
        return super().blueprint(on_new_message)

    async def _set_webhook(self) -> None:
        bot = self._new_bot()
        try:
            await bot.set_webhook(url=self.webhook_url)
        finally:
            # its HTTP session belongs to this short-lived loop
            await bot.session.close()


class MaskedSlackInput(CardMaskingMixin, SlackInput):
    """Rasa's Slack channel with card numbers masked (credentials: slack_token,
    slack_signing_secret, optional slack_channel, api_base, Rasa's other Slack settings)."""

    api_base: Optional[str] = None

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        """Rasa's Slack credentials plus ``api_base``."""
        channel = super().from_credentials(credentials)
        channel.api_base = (credentials or {}).get("api_base") or None  # type: ignore[attr-defined]
        return channel

    def get_output_channel(self, channel: Optional[Text] = None, thread_id: Optional[Text] = None) -> OutputChannel:
        """Rasa's Slack client, on ``api_base`` when one is set."""
        bot = super().get_output_channel(channel, thread_id)
        if self.api_base and isinstance(bot, SlackBot):
            bot.client = AsyncWebClient(self.slack_token, base_url=self.api_base.rstrip("/") + "/", proxy=self.proxy)
        return bot

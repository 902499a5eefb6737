"""What a merchant sends on WeCom / WeChat that is not text: a short answer, and pictures to the desk.

The bot reads text only. A picture, a voice message without the platform's speech
recognition, a file, a location, a link, a sticker or a video gets a short answer in the
merchant's language (``channels/texts.yml``: the conversation's ``language`` slot when
Rasa has one, else Chinese, the platforms' default) — never silence.

A picture is also offered to the support desk: fetched through the platform's media API
(``GET {api_base}/cgi-bin/media/get?access_token&media_id``, the same path on the
Official Account, the WeCom app and 微信客服) and POSTed raw to
``{DESK_URL}/api/channel/attachments?sender_id&channel&msgid`` with the bearer
``DESK_API_TOKEN``. The channel cannot see whether Rasa is paused for a handoff, so it
offers every picture and the desk decides: 201 attaches it to the open case (the merchant
is told the agent has it; so is a 200 with the ``attachment_id`` of a msgid taken before),
200 ``{"ignored": true}`` means there is no open case. Pictures
over 2 MiB or of a type the desk does not take are not uploaded. Every failure is logged
and the merchant still gets the answer.

``offer_image`` takes the platform's API base and a token function, so another channel
(微信客服) can call it with its own media API.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional

import aiohttp
import yaml
from rasa.core.channels.channel import OutputChannel

from common.images import image_type

logger = logging.getLogger(__name__)

MAX_ATTACHMENT_BYTES = 2 * 1024 * 1024  # the desk refuses more (413)
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"  # the platforms' default
TEXTS: Dict[str, Dict[str, str]] = yaml.safe_load(Path(__file__).with_name("texts.yml").read_text(encoding="utf-8"))

# (session, the token the platform just rejected or None) -> an access token:
# PlatformApi.access_token. Any: a channel whose second parameter is a "refresh" flag
# works too (a rejected token is truthy, None is not).
TokenSource = Callable[[aiohttp.ClientSession, Any], Awaitable[str]]


class MediaError(Exception):
    """The picture could not be fetched or is not one the desk takes (the reason is logged)."""


def answer_text(key: str, language: Optional[str]) -> str:
    """The channel's own answer ``key`` of texts.yml in the language (Chinese when unknown)."""
    return TEXTS[key][language if language in LANGUAGES else DEFAULT_LANGUAGE]


async def conversation_language(agent: Any, sender_id: str) -> str:
    """The ``language`` slot of the merchant's Rasa conversation, or Chinese.

    One read of the tracker store (Rasa's ``app.ctx.agent``); any problem means Chinese.
    """
    try:
        tracker = await agent.tracker_store.retrieve(sender_id)
        language = tracker.get_slot("language") if tracker is not None else None
    except Exception as problem:  # noqa: BLE001 - the answer must go out whatever the store does
        logger.warning("language of %s unknown (%s): answering in Chinese", sender_id, problem.__class__.__name__)
        return DEFAULT_LANGUAGE
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


async def fetch_media(
    session: aiohttp.ClientSession, api_base: str, access_token: TokenSource, media_id: str, limit: int = MAX_ATTACHMENT_BYTES
) -> bytes:
    """The bytes of a temporary media file (``cgi-bin/media/get``); a rejected token is refreshed once."""
    from channels.wecom import TOKEN_EXPIRED  # here: channels.wecom imports this module

    rejected: Optional[str] = None
    for _ in range(2):
        token = await access_token(session, rejected)
        params = {"access_token": token, "media_id": media_id}
        async with session.get(api_base.rstrip("/") + "/cgi-bin/media/get", params=params) as reply:
            kind = reply.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if reply.status != 200:
                raise MediaError(f"media API answered {reply.status}")
            if kind in ("application/json", "text/plain"):  # an error: {"errcode": 40007, ...}
                body = await reply.json(content_type=None)
                errcode = body.get("errcode") if isinstance(body, dict) else None
                if errcode in TOKEN_EXPIRED and rejected is None:
                    rejected = token
                    continue
                raise MediaError(f"media API errcode {errcode}")
            data = bytearray()
            async for chunk in reply.content.iter_chunked(64 * 1024):
                data.extend(chunk)
                if len(data) > limit:  # stop reading: the desk would refuse it anyway
                    raise MediaError(f"larger than {limit} bytes")
            return bytes(data)
    raise MediaError("access token refused twice")


async def attach_to_case(session: aiohttp.ClientSession, data: bytes, sender_id: str, channel: str, msgid: str) -> bool:
    """POST the picture to the desk; True when the desk attached it to an open case (201)."""
    desk_url, token = os.environ.get("DESK_URL"), os.environ.get("DESK_API_TOKEN")
    if not desk_url:
        raise MediaError("DESK_URL is not set")
    content_type = image_type(data)
    if content_type is None:
        raise MediaError("not a JPEG, PNG, GIF or WebP picture")
    async with session.post(
        desk_url.rstrip("/") + "/api/channel/attachments",
        params={"sender_id": sender_id, "channel": channel, "msgid": msgid},
        data=data,
        headers={"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})},
    ) as reply:
        if reply.status in (200, 201):
            # {"attachment_id": n}: on the case (200: this msgid was taken before);
            # {"ignored": true}: no open case
            answer = await reply.json(content_type=None)
            return isinstance(answer, dict) and isinstance(answer.get("attachment_id"), int)
        raise MediaError(f"desk answered {reply.status} {(await reply.text())[:200]}")


async def offer_image(api_base: str, access_token: TokenSource, media_id: str, sender_id: str, channel: str, msgid: str) -> bool:
    """Fetch a merchant's picture from the platform and give it to the desk.

    True when it was attached to the merchant's open case; False when there is none or
    anything failed (logged as a warning, nothing raised).
    """
    timeout = aiohttp.ClientTimeout(total=20)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            data = await fetch_media(session, api_base, access_token, media_id)
            return await attach_to_case(session, data, sender_id, channel, msgid)
    except (MediaError, RuntimeError, aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as problem:
        # RuntimeError: the platform gave no access token; ValueError: a malformed JSON answer
        reason = str(problem) or type(problem).__name__
        logger.warning("%s picture %s of %s not attached: %s", channel, msgid, sender_id, reason)
        return False


async def answer_media(output: OutputChannel, sender_id: str, language: str, image: Optional[Callable[[], Awaitable[bool]]] = None) -> None:
    """Answer a message the bot cannot read; a picture (``image``) is offered to the desk first."""
    attached = await image() if image is not None else False
    await output.send_text_message(sender_id, answer_text("image_to_agent" if attached else "media_answer", language))

"""微信客服 (WeCom customer service): the channel external WeChat users — merchants — reach.

The platform calls ``/webhooks/wecom_kf/webhook`` (GET to verify the URL, POST for every
change) with the WeCom callback scheme (``channels.wecom``: signature, AES, receive id =
CorpID, replay window, size limit). A POST is only a signal (``Event=kf_msg_or_event``
with a ``Token`` and the ``OpenKfId``); the webhook answers 200 with an empty body at once
and pulls the news with ``kf/sync_msg`` in the background:

* one sync at a time per ``open_kfid`` (a Redis lock when ``redis_url`` is set, across the
  Rasa processes), held until the pulled messages are handed to Rasa, so one merchant's
  messages reach Rasa in order whichever process the callbacks reach; the cursor is
  stored before the messages are handled, so a restart does not answer them again (a
  page whose cursor the store refused is handled all the same); on the very first sync
  (no cursor stored) the history the platform keeps (3 days) is read past without
  answering what was sent before the channel started; a ``msgid`` is marked handled
  (Redis when set, 3 days) once it was, and one whose handling failed is kept and
  handled again at the next sync (3 tries); ``-1`` (system busy) is tried again;
* ``origin`` 3, the merchant: to Rasa as sender ``"{open_kfid}:{external_userid}"`` on
  channel ``wecom_kf``, card numbers masked (``CardMaskingMixin``); a menu click
  (``text.menu_id``) becomes the button's payload; a ``scene_param`` of the contact link
  (``enter_session``) travels in the metadata of the merchant's next message; a picture
  (``msgtype`` image) is fetched with ``media/get`` and offered to the desk's open case
  (``channels.platform_media``), other kinds get a short answer;
* ``origin`` 5, a WeCom 接待人员 in the WeCom client: an ``agent_message`` report to the
  desk, never to Rasa;
* ``origin`` 4 events: ``session_status_change`` → a ``session`` report (the desk shows
  the pool / the WeCom agent, and on state 4 resolves the case and resumes the bot);
  ``msg_send_fail`` → the message is held after all (``held`` report, sent again later).

Replies go out with ``kf/send_msg`` (``msgmenu`` for buttons, within its limits; a msgid
derived from the desk's message id, so a retry is idempotent; text over 2,048 bytes split)
through ``channels.platform_delivery.Courier``: only in session states 0/1, at most 5
messages within 48 h of the merchant's last message; what cannot go out — also for a
failure of our own (the store, the network) — is held, reported and sent when the merchant
writes again. Nothing the output does raises into Rasa.

Session states (``kf/service_state``): 0 new, 1 bot, 2 pool, 3 WeCom agent, 4 ended. The
merchant's first message moves 0 → 1. At a handoff, ``handoff: desk`` (default) keeps the
session in state 1 and the desk's agents answer through the bot; ``handoff: wecom`` moves
it to 3 with ``servicer_userid`` (not on duty, 95014: to the pool instead) or to 2. The
channel learns of the handoff from ``action_escalate``'s custom message
``{"wecom_kf": "handoff"}``, sent only to 微信客服 conversations.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Text, Tuple

import yaml
from rasa.core.channels.channel import OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

from channels.desk_reports import DeskReports
from channels.masked import CardMaskingMixin
from channels.platform_delivery import Courier
from channels.platform_media import DEFAULT_LANGUAGE, answer_media, conversation_language, offer_image
from channels.platform_state import LocalState, platform_state
from channels.wecom import CallbackCrypto, CallbackError, PlatformApi, SignedWebhookInput, open_callback, xml_field

logger = logging.getLogger(__name__)

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]

TEXTS: Dict[str, str] = yaml.safe_load(Path(__file__).with_name("wecom_kf_texts.yml").read_text(encoding="utf-8"))
MAX_TEXT_BYTES = 2048
SEEN_SECONDS = 3 * 24 * 3600
MENU_SECONDS = 7 * 24 * 3600
SESSION_SECONDS = 3 * 24 * 3600
SCENE_SECONDS = 24 * 3600
MAX_PAGES = 100  # 1000 messages a page: a bound on one sync, never an endless loop
HANDOFF = "handoff"
# session_status_change change_type → the session's state afterwards
CHANGE_STATE = {1: 3, 2: 3, 3: 4, 4: 3}
SERVICER_NOT_ON_DUTY = 95014
SYSTEM_BUSY = -1
# msgmenu: head_content at most 1,024 bytes, at most 10 items, an item's words at most 128 bytes
MAX_MENU_HEAD_BYTES = 1024
MAX_MENU_ITEMS = 10
MAX_MENU_ITEM_BYTES = 128
MAX_ATTEMPTS = 3  # a message whose handling failed this often is given up (logged)
MAX_ROUNDS = 10  # pulls in one hold of the sync lock: what came in while the last was handled
MAX_RETRIES_KEPT = 1000


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> List[str]:
    """The text in parts of at most ``limit`` UTF-8 bytes, cut between characters."""
    parts: List[str] = []
    current: List[str] = []
    size = 0
    for char in text:
        width = len(char.encode("utf-8", errors="surrogatepass"))
        if size + width > limit and current:
            parts.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    if current or not parts:
        parts.append("".join(current))
    return parts


def fit(text: str, limit: int) -> str:
    """The text within ``limit`` UTF-8 bytes: cut between characters, "…" marking the cut."""
    if len(text.encode("utf-8", errors="surrogatepass")) <= limit:
        return text
    return split_text(text, limit - len("…".encode()))[0] + "…"


def split_sender(sender_id: str) -> Tuple[str, str]:
    """``(open_kfid, external_userid)`` of a 微信客服 sender id."""
    open_kfid, _, user = sender_id.partition(":")
    return open_kfid, user


class KfApi(PlatformApi):
    """The 微信客服 API: corpid/secret token, ``kf/send_msg`` and the session calls."""

    send_path = "/cgi-bin/kf/send_msg"
    # Waits before each new try of a "system busy" (-1) answer: the platform's advice is to
    # try again a little later, at most 3 times.
    busy_delays: Tuple[float, ...] = (0.2, 0.5, 1.0)

    async def call(self, path: str, payload: Dict[str, Any]) -> Dict[str, Any]:
        """The platform's answer; errcode -1 (system busy) is tried again, waiting longer each
        time (a resent ``send_msg`` keeps its msgid: the platform delivers it once)."""
        answer = await super().call(path, payload)
        for delay in self.busy_delays:
            if answer.get("errcode") != SYSTEM_BUSY:
                break
            logger.info("wecom_kf %s: system busy, trying again in %.1f s", path, delay)
            await asyncio.sleep(delay)
            answer = await super().call(path, payload)
        return answer

    def text_body(self, user: str, text: str) -> Dict[str, Any]:
        """Not used: 微信客服 bodies need the open_kfid and a msgid (``KfOutput``)."""
        raise NotImplementedError

    async def sync_msg(self, open_kfid: str, cursor: Optional[str], token: str) -> Dict[str, Any]:
        """One page of news (``has_more``, ``next_cursor``, ``msg_list``)."""
        body: Dict[str, Any] = {"token": token, "limit": 1000, "open_kfid": open_kfid}
        if cursor:
            body["cursor"] = cursor
        return await self.call("/cgi-bin/kf/sync_msg", body)

    async def service_state(self, open_kfid: str, user: str) -> Dict[str, Any]:
        """``service_state`` and ``servicer_userid`` of the merchant's session."""
        return await self.call("/cgi-bin/kf/service_state/get", {"open_kfid": open_kfid, "external_userid": user})

    async def trans(self, open_kfid: str, user: str, state: int, servicer: Optional[str] = None) -> int:
        """Move the session to ``state``; the errcode."""
        body: Dict[str, Any] = {"open_kfid": open_kfid, "external_userid": user, "service_state": state}
        if servicer:
            body["servicer_userid"] = servicer
        return int((await self.call("/cgi-bin/kf/service_state/trans", body)).get("errcode", 0) or 0)


class KfOutput(OutputChannel):
    """Rasa's messages (the bot's and the desk agents') out with ``kf/send_msg``.

    Nothing here raises into Rasa (an exception would lose the rest of its answer): every
    message goes through ``Courier.deliver``, which holds what fails and reports it, and
    the steps around it (remembering a menu, the handoff's ``trans``) are logged on failure.
    """

    def __init__(self, channel: "WeComKfInput") -> None:
        self._channel = channel

    @classmethod
    def name(cls) -> Text:
        return "wecom_kf"

    async def _deliver(self, recipient_id: str, text: str, body: Dict[str, Any], msgid: str, desk_message_id: Optional[int]) -> None:
        open_kfid, user = split_sender(recipient_id)
        body = {"touser": user, "open_kfid": open_kfid, "msgid": msgid, **body}
        await self._channel.courier.deliver(
            {"user": recipient_id, "msgid": msgid, "text": text, "body": body, "desk_message_id": desk_message_id, "held": 0}
        )

    async def _safely(self, what: str, recipient_id: str, step: Awaitable[Any]) -> None:
        try:
            await step
        except Exception:  # noqa: BLE001 - logged; Rasa's answer goes on
            logger.exception("wecom_kf %s for %s failed", what, recipient_id)

    @staticmethod
    def _msgid(desk_message_id: Optional[int]) -> str:
        # The desk's message id makes a resent agent reply the same platform message.
        return f"desk{desk_message_id}" if desk_message_id is not None else uuid.uuid4().hex[:24]

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        """Text, in parts of at most 2,048 bytes (``desk_message_id`` for an agent's reply)."""
        desk_message_id = kwargs.get("desk_message_id")
        base = self._msgid(desk_message_id)
        for number, part in enumerate(split_text(text)):
            await self._deliver(recipient_id, part, {"msgtype": "text", "text": {"content": part}}, f"{base}-{number}", desk_message_id)

    async def send_text_with_buttons(self, recipient_id: Text, text: Text, buttons: List[Dict[str, Any]], **kwargs: Any) -> None:
        """A ``msgmenu``: the text and one click item per button; a click returns its id.

        Within the platform's limits: a text over 1,024 bytes goes first as text, the last
        part heads the menu; more than 10 buttons make more menus; a button's words are cut
        at 128 bytes."""
        if not buttons:  # a menu needs items
            await self.send_text_message(recipient_id, text, **kwargs)
            return
        desk_message_id = kwargs.get("desk_message_id")
        base = self._msgid(desk_message_id)
        items = {f"{base}_{number}": button for number, button in enumerate(buttons, start=1)}
        await self._safely("remembering a menu", recipient_id, self._remember(recipient_id, items))
        heads = split_text(text, MAX_MENU_HEAD_BYTES)
        for number, head in enumerate(heads[:-1]):
            await self._deliver(recipient_id, head, {"msgtype": "text", "text": {"content": head}}, f"{base}-{number}", desk_message_id)
        ids = list(items)
        for index, start in enumerate(range(0, len(ids), MAX_MENU_ITEMS)):
            chunk = ids[start : start + MAX_MENU_ITEMS]
            head = heads[-1] if index == 0 else ""
            menu: Dict[str, Any] = {
                "list": [
                    {"type": "click", "click": {"id": item, "content": fit(str(items[item]["title"]), MAX_MENU_ITEM_BYTES)}}
                    for item in chunk
                ]
            }
            if head:
                menu["head_content"] = head
            words = "\n".join(([head] if head else []) + [str(items[item]["title"]) for item in chunk])
            await self._deliver(
                recipient_id, words, {"msgtype": "msgmenu", "msgmenu": menu}, f"{base}-{len(heads) - 1 + index}", desk_message_id
            )

    async def _remember(self, recipient_id: str, items: Dict[str, Dict[str, Any]]) -> None:
        # Not remembered (the store down): a click then reads as the button's words.
        menu_key = f"menu:{recipient_id}"
        known = (await self._channel.state.get(menu_key)) or {}
        known.update({item: button["payload"] for item, button in items.items()})
        # The newest menus' ids only: a click on a very old menu reads as its title.
        await self._channel.state.put(menu_key, dict(list(known.items())[-50:]), MENU_SECONDS)

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        """``{"wecom_kf": "handoff"}`` from ``action_escalate``: the handoff; nothing else is sent.

        A handoff that fails (``trans`` refused or unreachable) leaves the session with the
        bot: the desk's agents then answer through it, as in desk mode."""
        if json_message.get("wecom_kf") == HANDOFF:
            await self._safely("the handoff", recipient_id, self._channel.hand_over(recipient_id))


class WeComKfInput(CardMaskingMixin, SignedWebhookInput):
    """微信客服 (credentials: corp_id, secret, token, encoding_aes_key; optional api_base,
    redis_url, state_file, handoff ``desk`` | ``wecom``, servicer_userid)."""

    @classmethod
    def name(cls) -> Text:
        return "wecom_kf"

    @classmethod
    def settings(cls, credentials: Dict[Text, Any]) -> Dict[str, Any]:
        """The common settings, the CorpID and the handoff's."""
        return {
            **super().settings(credentials),
            "corp_id": str(credentials["corp_id"]),
            "handoff": str(credentials.get("handoff") or "desk"),
            "servicer_userid": credentials.get("servicer_userid") or None,
        }

    def __init__(
        self,
        corp_id: str,
        secret: str,
        token: str,
        encoding_aes_key: str,
        api_base: str = "https://qyapi.weixin.qq.com",
        redis_url: Optional[str] = None,
        state_file: Optional[str] = None,
        handoff: str = "desk",
        servicer_userid: Optional[str] = None,
        reports: Optional[DeskReports] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if handoff not in ("desk", "wecom"):
            raise ValueError("handoff must be desk or wecom")
        self.crypto = CallbackCrypto(token, encoding_aes_key, corp_id)
        self.state: LocalState = platform_state(redis_url, Path(state_file or "var/wecom_kf_state.sqlite"), "wecom_kf", clock)
        self.api = KfApi(api_base, corp_id, secret, state=self.state)
        self.reports = reports or DeskReports.from_environment("wecom_kf")
        self.courier = Courier(self.state, self.reports, self.api.send_body, blocked=self._with_agent)
        self.handoff, self.servicer_userid = handoff, servicer_userid
        self.api_base = api_base  # also the media API's (pictures)
        self.clock = clock
        self.started_at = clock()
        # Messages to handle again whose retry the store could not keep, per open_kfid.
        self._retries: Dict[str, List[Dict[str, Any]]] = {}
        self._tasks: set = set()

    async def close(self) -> None:
        """Reports still queued (sent / held / session) go to the desk, then the store is closed."""
        await self.reports.close()
        await super().close()

    def get_output_channel(self) -> OutputChannel:
        """Used by Rasa for the desk's replies and the resume (``output_channel=latest``)."""
        return KfOutput(self)

    # --- the webhook ---------------------------------------------------------------

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """``/webhooks/wecom_kf/``: health, the URL verification and the callbacks."""
        hook = self.webhook()

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> Any:
            try:
                message = open_callback(self.crypto, dict(request.query_args), request.body or b"", self.clock())
                signal = self.signal(message)
            except CallbackError as error:
                logger.warning("wecom_kf callback refused: %s", error)
                return response.text(str(error), status=error.status)
            if signal is not None:
                agent = getattr(request.app.ctx, "agent", None)  # Rasa's: the conversation's language
                # Answered now; the platform retries a callback not answered within 5 s.
                self.in_background(self.sync(*signal, on_new_message, agent))
            return response.text("")

        return hook

    @staticmethod
    def signal(message: bytes) -> Optional[Tuple[str, str]]:
        """``(open_kfid, token)`` of a ``kf_msg_or_event`` callback; None for other events."""
        if xml_field(message, "MsgType") != "event" or xml_field(message, "Event") != "kf_msg_or_event":
            return None
        return xml_field(message, "OpenKfId"), xml_field(message, "Token")

    # --- pulling the news ----------------------------------------------------------

    async def sync(self, open_kfid: str, token: str, on_new_message: OnNewMessage, agent: Any = None) -> None:
        """Pull everything new for ``open_kfid`` and handle it in order (never raises);
        ``agent`` (Rasa's) tells the language of the answer to a picture.

        The sync lock (Redis when set: across the Rasa processes) is held until every
        pulled message has been handed to Rasa, so no later sync, here or on another
        process, hands a merchant's next message on before this one; what came in
        meanwhile is pulled before the lock goes (a callback that waited too long for it
        gives up). Messages whose handling failed earlier go first; after a failure the
        merchant's later messages wait with it, in order."""
        try:
            async with self.state.lock(f"sync:{open_kfid}"):
                stalled: Set[str] = set()  # merchants whose earlier message failed in this sync
                pending = await self._take_retries(open_kfid)
                for _ in range(MAX_ROUNDS):
                    handled = False
                    for item in pending + await self._pull(open_kfid, token):
                        handled = await self._handle_in_turn(open_kfid, item, stalled, on_new_message, agent) or handled
                    pending = []
                    if not handled:
                        break
        except Exception:  # noqa: BLE001 - the platform or Redis down: the next callback pulls again
            logger.exception("wecom_kf sync of %s failed", open_kfid)

    async def _handle_in_turn(
        self, open_kfid: str, item: Dict[str, Any], stalled: Set[str], on_new_message: OnNewMessage, agent: Any
    ) -> bool:
        """Handle one message unless its merchant's earlier one failed (then it waits too);
        True when it was handled now."""
        event = item.get("event")  # an event names the merchant inside it
        merchant = str(item.get("external_userid") or (event.get("external_userid") if isinstance(event, dict) else ""))
        if merchant in stalled:
            await self._retry_later(open_kfid, item, failed=False)
            return False
        outcome = await self._handle_once(item, on_new_message, agent)
        if outcome is None:
            stalled.add(merchant)
            await self._retry_later(open_kfid, item)
        return bool(outcome)

    async def _pull(self, open_kfid: str, token: str) -> List[Dict[str, Any]]:
        """What is new since the stored cursor; once a page is pulled, nothing raises: a
        page the store could not take the cursor of is still handled (the next sync reads
        it again from the older cursor, and the handled msgids are skipped)."""
        cursor_key = f"cursor:{open_kfid}"
        cursor = await self.state.durable_get(cursor_key)
        first_start = cursor is None
        fetched = False  # a page the platform answered: only then is the log's start known
        news: List[Dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            try:
                page = await self.api.sync_msg(open_kfid, cursor, token)
            except Exception as problem:  # noqa: BLE001 - what was pulled is handled; the next callback goes on
                logger.warning("wecom_kf sync_msg failed: %s", problem)
                break
            if page.get("errcode", 0):
                logger.warning("wecom_kf sync_msg refused: %s %s", page.get("errcode"), page.get("errmsg"))
                break
            fetched = True
            messages = page.get("msg_list") or []
            for item in messages if isinstance(messages, list) else []:
                if not isinstance(item, dict) or not item.get("msgid"):
                    continue
                if first_start and float(item.get("send_time") or 0) < int(self.started_at):
                    continue  # history from before this deployment: read past, not answered
                news.append(item)
            if page.get("next_cursor"):
                cursor = str(page["next_cursor"])
                # Stored before anything is handled: a crash loses at most this page's
                # answers, it never answers them twice.
                if not await self._store_cursor(cursor_key, cursor):
                    break
            if not page.get("has_more"):
                break
        if first_start and cursor is None and fetched:
            # The log was read and is empty: not a first start again. After a failed first
            # sync (e.g. a secret not yet authorised) nothing is stored, so the next sync
            # still reads past the history instead of answering three days of it.
            await self._store_cursor(cursor_key, "")
        return news

    async def _store_cursor(self, key: str, cursor: str) -> bool:
        try:
            await self.state.durable_put(key, cursor)
            return True
        except Exception:  # noqa: BLE001 - the page is handled all the same
            logger.exception("wecom_kf cursor %s not stored", key)
            return False

    async def _handle_once(self, item: Dict[str, Any], on_new_message: OnNewMessage, agent: Any) -> Optional[bool]:
        """True: handled now (and marked so); False: handled before; None: it failed."""
        seen = f"msg:{item['msgid']}"
        try:
            if await self.state.get(seen) is not None:
                return False  # a callback retried, a page read again
        except Exception:  # noqa: BLE001 - not known: handled, twice rather than never
            logger.exception("wecom_kf message %s: handled before?", item["msgid"])
        try:
            await self.handle(item, on_new_message, agent)
        except Exception:  # noqa: BLE001 - one bad message must not stop the others
            logger.exception("wecom_kf message %s not handled", item["msgid"])
            return None
        try:
            await self.state.put(seen, True, SEEN_SECONDS)
        except Exception:  # noqa: BLE001 - handled; at worst answered again if read again
            logger.exception("wecom_kf message %s not marked handled", item["msgid"])
        return True

    async def _retry_later(self, open_kfid: str, item: Dict[str, Any], failed: bool = True) -> None:
        """Keep the message for the next sync (store, else this process); one that failed
        ``MAX_ATTEMPTS`` times is given up (logged)."""
        attempts = int(item.get("_attempts", 0)) + (1 if failed else 0)
        if attempts >= MAX_ATTEMPTS:
            logger.error("wecom_kf message %s given up after %d attempts", item["msgid"], attempts)
            return
        item = {**item, "_attempts": attempts}
        key = f"retry:{open_kfid}"
        try:  # under the sync lock: no other writer of the list
            kept = (await self.state.durable_get(key)) or []
            await self.state.durable_put(key, (kept + [item])[-MAX_RETRIES_KEPT:])
        except Exception:  # noqa: BLE001 - the store is down: this process keeps it meanwhile
            logger.exception("wecom_kf message %s kept for a retry in this process only", item["msgid"])
            self._retries.setdefault(open_kfid, []).append(item)

    async def _take_retries(self, open_kfid: str) -> List[Dict[str, Any]]:
        """The messages to handle again, oldest first, taken from the store and this process."""
        kept: List[Dict[str, Any]] = []
        try:
            kept = (await self.state.durable_get(f"retry:{open_kfid}")) or []
            if kept:
                await self.state.durable_put(f"retry:{open_kfid}", None)
        except Exception:  # noqa: BLE001 - left in the store for a later sync
            logger.exception("wecom_kf retries of %s not read", open_kfid)
            kept = []
        return kept + self._retries.pop(open_kfid, [])

    async def handle(self, item: Dict[str, Any], on_new_message: OnNewMessage, agent: Any = None) -> None:
        """One message or event of the sync, by origin."""
        origin = item.get("origin")
        if origin == 3:
            await self._from_merchant(item, on_new_message, agent)
        elif origin == 5:
            self._from_wecom_agent(item)
        elif origin == 4 and item.get("msgtype") == "event" and isinstance(item.get("event"), dict):
            await self._event(item["event"], str(item["msgid"]))

    @staticmethod
    def _sender(item: Dict[str, Any]) -> Optional[str]:
        """``"{open_kfid}:{external_userid}"``, or None when the platform left one out."""
        open_kfid, user = item.get("open_kfid"), item.get("external_userid")
        if not (isinstance(open_kfid, str) and open_kfid and isinstance(user, str) and user):
            logger.warning("wecom_kf message %s without open_kfid or external_userid", item.get("msgid"))
            return None
        return f"{open_kfid}:{user}"[:255]

    async def _from_merchant(self, item: Dict[str, Any], on_new_message: OnNewMessage, agent: Any = None) -> None:
        sender = self._sender(item)
        if sender is None:
            return
        open_kfid, user = split_sender(sender)
        await self._bot_session(open_kfid, user)
        await self.courier.merchant_wrote(sender)
        text = await self._text_of(sender, item)
        output = self.get_output_channel()
        picture = item.get("image")
        media_id = picture.get("media_id") if isinstance(picture, dict) else None
        if item.get("msgtype") == "image" and isinstance(media_id, str) and media_id:
            # Offered to the desk, which attaches it to an open case (a handoff) or ignores it.
            language = await conversation_language(agent, sender) if agent is not None else DEFAULT_LANGUAGE
            image = partial(offer_image, self.api_base, self.api.access_token, media_id, sender, self.name(), str(item["msgid"]))
            await answer_media(output, sender, language, image)
            return
        if text is None:
            await output.send_text_message(sender, TEXTS["not_text"])
            return
        scene = await self.state.get(f"scene:{sender}")
        metadata = {"scene_param": scene} if scene else None
        if scene:
            await self.state.put(f"scene:{sender}", None, 1)
        await on_new_message(UserMessage(text, output, sender, input_channel=self.name(), message_id=str(item["msgid"]), metadata=metadata))

    async def _text_of(self, sender: str, item: Dict[str, Any]) -> Optional[str]:
        """The merchant's words, a menu click as the button's payload; None for other kinds."""
        body = item.get("text")
        if item.get("msgtype") != "text" or not isinstance(body, dict) or not isinstance(body.get("content"), str):
            return None
        if body.get("menu_id"):
            payload = ((await self.state.get(f"menu:{sender}")) or {}).get(str(body["menu_id"]))
            if payload:
                return payload
        return body["content"]

    def _from_wecom_agent(self, item: Dict[str, Any]) -> None:
        sender = self._sender(item)
        body = item.get("text") if item.get("msgtype") == "text" else None
        text = body.get("content") if isinstance(body, dict) else None
        if sender is not None:
            self.reports.agent_message(
                str(item["msgid"]),
                sender,
                text if isinstance(text, str) else f"[{item.get('msgtype')}]",
                item.get("servicer_userid") or None,
            )

    async def _event(self, event: Dict[str, Any], msgid: str) -> None:
        sender = self._sender({**event, "msgid": msgid})
        if sender is None:  # logged: an event of nobody drives no session
            return
        kind = event.get("event_type")
        if kind == "enter_session" and event.get("scene_param"):
            await self.state.put(f"scene:{sender}", str(event["scene_param"])[:128], SCENE_SECONDS)
        elif kind == "session_status_change" and event.get("change_type") in CHANGE_STATE:
            state = CHANGE_STATE[event["change_type"]]
            await self.state.durable_put(f"session:{sender}", state, SESSION_SECONDS)
            # The platform names the new agent (change 1, 2, 4) or, when a session ends (3),
            # only the agent who ended it (old_servicer_userid): the desk's resolved_by.
            servicer = event.get("new_servicer_userid") or (event.get("old_servicer_userid") if state == 4 else None)
            self.reports.session(f"wecom_kf:{msgid}:session", sender, state, servicer or None)
        elif kind == "msg_send_fail" and event.get("fail_msgid"):
            await self.courier.send_failed(str(event["fail_msgid"]))

    # --- the session ---------------------------------------------------------------

    async def _bot_session(self, open_kfid: str, user: str) -> None:
        """A new session (state 0) is taken by the bot (state 1) before it answers."""
        key = f"session:{open_kfid}:{user}"
        if await self.state.durable_get(key) in (1, 2, 3):
            return
        current = await self.api.service_state(open_kfid, user)
        state = int(current.get("service_state", 0) or 0)
        if state == 0 and await self.api.trans(open_kfid, user, 1) == 0:
            state = 1
        await self.state.durable_put(key, state, SESSION_SECONDS)

    async def _with_agent(self, sender: str) -> Optional[str]:
        """Why the bot may not send now (the session is in the pool or with a WeCom agent)."""
        state = await self.state.durable_get(f"session:{sender}")
        if state in (2, 3):
            return "the session is in the WeCom pool" if state == 2 else "the session is with a WeCom agent"
        return None

    async def hand_over(self, sender: str) -> None:
        """``handoff: wecom``: the session to ``servicer_userid`` (3) or to the pool (2)."""
        if self.handoff != "wecom":
            return  # desk mode: the session stays with the bot, the desk answers through it
        open_kfid, user = split_sender(sender)
        state, servicer = 2, None
        if self.servicer_userid:
            errcode = await self.api.trans(open_kfid, user, 3, self.servicer_userid)
            if errcode == 0:
                state, servicer = 3, self.servicer_userid
            elif errcode != SERVICER_NOT_ON_DUTY:
                logger.warning("wecom_kf trans to %s refused: %s", self.servicer_userid, errcode)
        if state == 2:
            errcode = await self.api.trans(open_kfid, user, 2)
            if errcode:
                logger.warning("wecom_kf trans to the pool refused: %s", errcode)
                return
        await self.state.durable_put(f"session:{sender}", state, SESSION_SECONDS)
        # Not made of the sender id: report ids are at most 128 characters.
        self.reports.session(f"wecom_kf:trans:{uuid.uuid4().hex}", sender, state, servicer)

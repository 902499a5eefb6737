"""Sending to a merchant under the platform's rules, and never losing what cannot go out.

Both WeChat channels that reach merchants (微信客服 and the Official Account) may send only
within 48 h of the merchant's last message and at most 5 messages since then. Every
outgoing message passes ``Courier.deliver``: the ledger (``channels.platform_state``) and
the channel's own check (a 微信客服 session with a WeCom agent) say whether it may go out
(while a WeCom agent has the session the bot's own messages are dropped, not kept: they
would come too late; the desk's are kept);
the platform's answer says whether it went out. A message that did not — our own rule,
any non-zero errcode, a later ``msg_send_fail`` event — is kept for the merchant and
reported to the desk as ``held`` with the reason; when the merchant writes again
(``merchant_wrote``) the held messages go out first, in order, each reported ``sent``.
Nothing is reported ``sent`` that the platform did not accept. ``deliver`` never raises:
an error of the store or of the platform's client holds the message with the reason
(``channel error: …``); when even the store cannot keep it, this process does.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from channels.desk_reports import DeskReports
from channels.platform_state import DURABLE_SECONDS, MAX_HELD, WINDOW_SECONDS, LocalState, TtlLru

logger = logging.getLogger(__name__)

# The platform's answer to one send: (errcode, errmsg); 0 is accepted.
Send = Callable[[Dict[str, Any]], Awaitable[Tuple[int, str]]]
Blocked = Callable[[str], Awaitable[Optional[str]]]

# Errcodes whose meaning the agent needs in words; the others are shown as the number.
ERRCODE_WORDS = {
    95018: "the session is with a WeCom agent",
    95001: "the platform's limit of messages since the merchant last wrote",
    45015: "48-hour window closed",
    45047: "the platform's limit of messages since the merchant last wrote",
}


def errcode_reason(errcode: int) -> str:
    """Short English words for the agent, e.g. "errcode 95018: the session is with a WeCom agent"."""
    words = ERRCODE_WORDS.get(errcode)
    return f"errcode {errcode}: {words}" if words else f"errcode {errcode}"


class Courier:
    """One channel's outgoing messages: send, or hold and report; resend when the merchant writes.

    An item is a dict: ``user`` (the state key of the merchant, also the Rasa sender id),
    ``msgid`` (stable per message and part), ``text``, ``body`` (what the platform is sent),
    ``desk_message_id`` (int or None) and ``held`` (times held so far).
    """

    def __init__(self, state: LocalState, reports: DeskReports, send: Send, blocked: Optional[Blocked] = None) -> None:
        self.state, self.reports, self._send, self._blocked = state, reports, send, blocked
        # Held messages the store could not take (Redis / SQLite down), per merchant.
        self._unsaved = TtlLru()

    async def deliver(self, item: Dict[str, Any]) -> bool:
        """Send one message now if the rules allow and the platform accepts; else hold it.

        Never raises: this is every outgoing message's one path, and an exception here
        would end Rasa's answer (the rest of it lost). A failure of our own — the state
        store (Redis, SQLite), the platform's client — holds the message with the reason.
        """
        try:
            reason = await self._attempt(item)
        except Exception as problem:  # noqa: BLE001 - kept and reported, never raised into Rasa
            logger.exception("message %s to %s not sent", item.get("msgid"), item.get("user"))
            reason = f"channel error: {type(problem).__name__}"
        if reason == "":
            return False  # dropped on purpose (the bot's words while a person has the session)
        if reason is None:
            return True
        await self.hold(item, reason)
        return False

    async def _attempt(self, item: Dict[str, Any]) -> Optional[str]:
        """None when the platform took the message; "" when it is dropped; else why not."""
        user = item["user"]
        reason = await self._blocked(user) if self._blocked else None
        if reason is not None and item.get("desk_message_id") is None:
            # The bot's own words while a person has the session: said too late to keep.
            logger.info("bot message to %s not sent: %s", user, reason)
            return ""
        if reason is None:
            reason = await self.state.reserve_send(user)
        if reason is not None:
            return reason
        try:
            errcode, errmsg = await self._send(item["body"])
        except Exception as problem:  # noqa: BLE001 - network, token endpoint down: kept, not lost
            logger.warning("send to %s failed: %s", user, problem)
            errcode, errmsg = -1, type(problem).__name__
        if errcode == 0:
            self.reports.delivery(f"{self.reports.channel}:{item['msgid']}:sent", user, item["text"], item.get("desk_message_id"))
            try:
                # Remembered for a later msg_send_fail event (the session lasts 48 h).
                await self.state.put(f"sent:{item['msgid']}", item, WINDOW_SECONDS)
            except Exception:  # noqa: BLE001 - it went out: reported sent, only a later failure unknown
                logger.exception("sent message %s not remembered", item["msgid"])
            return None
        logger.warning("platform refused a message to %s: %s %s", user, errcode, errmsg)
        await self.state.release_send(user)
        return "send failed" if errcode == -1 else errcode_reason(errcode)

    async def hold(self, item: Dict[str, Any], reason: str) -> None:
        """Keep the message for the merchant's next message and tell the desk why (never raises)."""
        item = {**item, "held": int(item.get("held", 0)) + 1}
        await self._keep(item)
        self.reports.delivery(
            f"{self.reports.channel}:{item['msgid']}:held{item['held']}",
            item["user"],
            item["text"],
            item.get("desk_message_id"),
            reason=reason,
        )

    async def _keep(self, item: Dict[str, Any]) -> None:
        user = item["user"]
        try:
            await self.state.hold(user, item)
        except Exception:  # noqa: BLE001 - the store is down: this process keeps it meanwhile
            logger.exception("held message %s to %s kept in this process only", item["msgid"], user)
            self._unsaved.put(user, ((self._unsaved.get(user) or []) + [item])[-MAX_HELD:], DURABLE_SECONDS)

    async def merchant_wrote(self, user: str) -> None:
        """The window opens again: send what was held, oldest first, until one fails (never raises)."""
        try:
            await self.state.heard_from(user)
        except Exception:  # noqa: BLE001 - our count is off; the platform's own check still holds
            logger.exception("the window of %s not reopened in the store", user)
        held: List[Dict[str, Any]] = []
        try:
            held = await self.state.take_held(user)
        except Exception:  # noqa: BLE001 - still in the store: sent the next time the merchant writes
            logger.exception("held messages of %s not read", user)
        held += self._unsaved.get(user) or []
        self._unsaved.put(user, None, 1)
        for number, item in enumerate(held):
            if not await self.deliver(item):
                for later in held[number + 1 :]:  # still held, already reported
                    await self._keep(later)
                break

    async def send_failed(self, msgid: str, reason: str = "msg_send_fail event") -> None:
        """The platform took a message and then could not deliver it: held after all."""
        item = await self.state.get(f"sent:{msgid}")
        if item is None:
            logger.warning("msg_send_fail for unknown msgid %s", msgid)
            return
        # A new msgid for the resend: the platform keeps the ones it took (and the desk the
        # report ids made of them).
        fresh = f"{msgid[:26]}-r{int(item.get('held', 0)) + 1}"
        body = {**item["body"], "msgid": fresh} if "msgid" in item["body"] else item["body"]
        await self.hold({**item, "msgid": fresh, "body": body}, reason)

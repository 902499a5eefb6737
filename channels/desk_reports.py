"""What became of messages on a platform, reported to the support desk.

``POST {DESK_URL}/api/channel/reports`` with ``{"reports": [...]}`` and the bearer
``DESK_API_TOKEN`` (docs/wechat.md, "Reports to the desk"): ``delivery`` (sent / held, with the
reason), ``agent_message`` (a WeCom agent answered in the WeCom client) and ``session``
(a 微信客服 session changed state). Reports go out in order from a background task,
batched and retried while the desk is down (``rasa_server.desk_post.BatchedPoster``);
each has a ``report_id`` the desk ignores when it has seen it, so a retried batch counts once.
A report the desk finds malformed is rejected alone (the rest of its batch is taken) and
logged by the poster.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, Optional

from rasa_server.desk_post import BatchedPoster

logger = logging.getLogger(__name__)

MAX_TEXT = 4096
MAX_PENDING = 5_000


class DeskReports:
    """Queues reports for the desk; nothing waits for it."""

    def __init__(
        self, desk_url: Optional[str], token: Optional[str], channel: str, max_pending: int = MAX_PENDING, retry_max_seconds: float = 10.0
    ) -> None:
        self.channel = channel
        url = f"{desk_url.rstrip('/')}/api/channel/reports" if desk_url else None
        self.poster = BatchedPoster(
            url, token, "reports", max_pending=max_pending, retry_max_seconds=retry_max_seconds, what="channel reports"
        )
        if not url:
            logger.warning("DESK_URL is empty: %s delivery reports are not sent to the desk", channel)

    @classmethod
    def from_environment(cls, channel: str) -> "DeskReports":
        """The desk of the Rasa process's environment (``DESK_URL``, ``DESK_API_TOKEN``)."""
        return cls(os.environ.get("DESK_URL") or None, os.environ.get("DESK_API_TOKEN") or None, channel)

    def _put(self, kind: str, report_id: str, sender_id: str, **fields: Any) -> None:
        report: Dict[str, Any] = {
            "kind": kind,
            "report_id": report_id[:128],
            "sender_id": sender_id[:255],
            "channel": self.channel,
            "at": time.time(),
            **fields,
        }
        self.poster.put(report)

    def delivery(self, report_id: str, sender_id: str, text: str, desk_message_id: Optional[int], reason: Optional[str] = None) -> None:
        """One outgoing message of the desk's: ``sent`` (the platform took it) or ``held``
        with a reason. The bot's own messages (no ``desk_message_id``) are not reported: the
        desk has nothing to mark for them, and a held one still goes out when the merchant
        writes again."""
        if desk_message_id is None:
            return
        state = {"state": "held", "reason": reason} if reason else {"state": "sent"}
        self._put("delivery", report_id, sender_id, desk_message_id=desk_message_id, text=text[:MAX_TEXT], **state)

    def agent_message(self, msgid: str, sender_id: str, text: str, servicer_userid: Optional[str]) -> None:
        """A WeCom 接待人员's message to the merchant, for the desk's transcript (the platform
        may leave out who wrote it: ``servicer_userid`` null then)."""
        self._put(
            "agent_message",
            f"{self.channel}:{msgid}:agent",
            sender_id,
            text=text[:MAX_TEXT],
            servicer_userid=servicer_userid or None,
            msgid=msgid,
        )

    def session(self, report_id: str, sender_id: str, state: int, servicer_userid: Optional[str]) -> None:
        """The 微信客服 session's new state (0 new … 4 ended)."""
        self._put("session", report_id, sender_id, state=state, servicer_userid=servicer_userid)

    async def close(self) -> None:
        """Flush briefly and stop the background task."""
        await self.poster.close()

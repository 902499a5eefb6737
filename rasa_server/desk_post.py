"""Items POSTed to one desk endpoint in batches, in order, by a background task.

Shared by Rasa's event broker (``rasa_server.desk_events``, ``/api/rasa/events``) and the
platform channels' delivery reports (``channels.desk_reports``, ``/api/channel/reports``).
Whoever queues never waits for the desk and never fails because of it: a desk that is down
gets the same batch again, in order, with a growing pause between tries; at most
``max_pending`` items wait (the oldest are dropped past that, and the log says how many).
A batch the desk refuses for good (a 4xx other than 401/403/408/429) is dropped and logged:
sending it again would be refused again. A desk that takes a batch but rejects some of
its items answers 200 with ``{"rejected": [{"index", "error"}]}``: those are logged (and
counted in ``rejected``), the rest of the batch was taken.

This module imports nothing of the desk: the Rasa side talks to it over HTTP only.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Deque, Dict, List, Optional, Text

import aiohttp

logger = logging.getLogger(__name__)

Item = Dict[Text, Any]

BATCH_SIZE = 200
MAX_PENDING = 10_000
RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 0.5, 10.0


class BatchedPoster:
    """A bounded queue of JSON items sent as ``{key: [items]}`` to ``url`` with a bearer token."""

    def __init__(
        self,
        url: Optional[str],
        token: Optional[str],
        key: str,
        batch_size: int = BATCH_SIZE,
        max_pending: int = MAX_PENDING,
        retry_first_seconds: float = RETRY_FIRST_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
        timeout_seconds: float = 5.0,
        what: str = "items",
    ) -> None:
        self.url, self.token, self.key, self.what = url, token, key, what
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.retry_first_seconds = retry_first_seconds
        self.retry_max_seconds = retry_max_seconds
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        # (sequence number, item): a batch in flight is removed by number once taken,
        # whatever was dropped from the front meanwhile.
        self.pending: Deque[tuple[int, Item]] = collections.deque()
        self._sequence = 0
        self.dropped = 0
        self.rejected = 0
        self._wake = asyncio.Event()
        self._task: Optional["asyncio.Task[None]"] = None
        self._session: Optional[aiohttp.ClientSession] = None

    def put(self, item: Item) -> None:
        """Queue one item (never blocks; needs a running event loop)."""
        if not self.url:
            return
        if len(self.pending) >= self.max_pending:
            self.pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "desk unreachable and %d %s waiting: %d oldest dropped so far",
                    self.max_pending,
                    self.what,
                    self.dropped,
                )
        self._sequence += 1
        self.pending.append((self._sequence, item))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send_forever())

    async def _send_forever(self) -> None:
        """Send what is pending, oldest first; retry a failed batch until it is taken."""
        pause = self.retry_first_seconds
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self.pending[i] for i in range(min(self.batch_size, len(self.pending)))]
            if await self._post([item for _, item in batch]):
                last = batch[-1][0]
                while self.pending and self.pending[0][0] <= last:
                    self.pending.popleft()
                pause = self.retry_first_seconds
                continue
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.retry_max_seconds)

    async def _post(self, batch: List[Item]) -> bool:
        """One POST; True when the desk took the batch (or refused it for good)."""
        if not self.url:
            return True  # nothing is queued without a URL
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with self._session.post(self.url, json={self.key: batch}, headers=headers) as response:
                if response.status < 300:
                    self._log_rejected(batch, await _json_or_none(response))
                    return True
                body = (await response.text())[:200]
                if 400 <= response.status < 500 and response.status not in (401, 403, 408, 429):
                    logger.error("desk refused %d %s (%d %s): dropped", len(batch), self.what, response.status, body)
                    return True
                logger.warning("desk answered %d to %d %s, retrying", response.status, len(batch), self.what)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as problem:
            logger.info("desk not reachable (%s), %d %s waiting", problem.__class__.__name__, len(self.pending), self.what)
        return False

    def _log_rejected(self, batch: List[Item], answer: Any) -> None:
        """Log each item the desk took the batch without, by its ids (not its words)."""
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        if not isinstance(rejected, list):
            return
        for refusal in rejected:
            index = refusal.get("index") if isinstance(refusal, dict) else None
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(batch):
                logger.error("desk rejected one of %d %s: %s", len(batch), self.what, str(refusal)[:200])
                continue
            self.rejected += 1
            item = batch[index]
            ids = {key: item[key] for key in ("kind", "report_id", "sender_id") if key in item}
            logger.error("desk rejected %s %s: %s (dropped)", self.what, ids, str(refusal.get("error"))[:200])

    async def close(self, flush_seconds: float = 2.0) -> None:
        """Send what is pending for up to ``flush_seconds``, then stop."""
        if self._task is not None and not self._task.done():
            deadline = asyncio.get_running_loop().time() + flush_seconds
            while self.pending and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.pending:
            logger.warning("%d %s not sent to the desk at shutdown", len(self.pending), self.what)
        if self._session is not None:
            await self._session.close()


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    """The answer's JSON, or None when it has none (the batch was taken all the same)."""
    try:
        return await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return None

"""Evidence for the desk's proposed incidents, sent fire and forget.

``reported``: a merchant reported error 1000 (once per run of the checks, when the
incident check decided); ``server_status_failed``: the server-status step did not fix the
terminal. The report goes out in the background with a 1 s timeout: a desk that is slow
or down never holds up the chat, and a lost report only weakens a proposal.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Optional, Set

from rasa_sdk import Tracker

from actions.desk_client import DeskClient, DeskRejected, DeskUnavailable
from actions.language import language_of
from actions.merchant import merchant_number, merchant_scope
from actions.settings import current_settings
from common.privacy import mask_card_numbers

logger = logging.getLogger(__name__)

REPORT_TIMEOUT_SECONDS = 1.0
MAX_ANSWER_CHARS = 500

# Keeps the tasks referenced until they end (asyncio holds only weak references).
_in_flight: Set["asyncio.Task[None]"] = set()


def report_payload(tracker: Tracker, kind: str) -> Dict[str, Any]:
    """The report as the desk takes it (``POST /api/incidents/reports``)."""
    merchant = merchant_scope(tracker)
    words = tracker.latest_message.get("text") or ""
    payload: Dict[str, Any] = {
        "sender_id": tracker.sender_id,
        "channel": merchant["channel"] or "unknown",
        "language": language_of(tracker),
        "kind": kind,
        "region": merchant["region"],
        "terminal_model": merchant["terminal_model"],
        "merchant_id": merchant_number(tracker),
        # A button's payload ("/inform_not_fixed") is not the merchant's words.
        "answer": None if words.startswith("/") else mask_card_numbers(words)[:MAX_ANSWER_CHARS] or None,
    }
    return {key: value for key, value in payload.items() if value is not None}


async def _post(payload: Dict[str, Any]) -> None:
    try:
        await DeskClient(current_settings(), timeout=REPORT_TIMEOUT_SECONDS).report_incident(payload)
    except (DeskUnavailable, DeskRejected) as error:
        logger.info("incident report not taken by the desk: %s", error)


def send_report(tracker: Tracker, kind: str) -> None:
    """Send a report in the background; returns at once."""
    task = asyncio.get_running_loop().create_task(_post(report_payload(tracker, kind)))
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)


async def reports_in_flight(timeout: Optional[float] = None) -> None:
    """Wait for the reports this event loop is still sending (tests, and a clean shutdown).

    A task of a loop that has ended (an earlier test's) can never finish: it is dropped."""
    loop = asyncio.get_running_loop()
    for task in [task for task in _in_flight if task.get_loop() is not loop and task.get_loop().is_closed()]:
        _in_flight.discard(task)
    mine = {task for task in _in_flight if task.get_loop() is loop}
    if mine:
        await asyncio.wait(mine, timeout=timeout)

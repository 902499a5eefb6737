"""What the desk already knows about a case's merchant and terminal: earlier cases, the
bot's diagnostics runs, and whether the terminal keeps failing (the repeat flag).

Error 1000 coming back on the same terminal within days points at the hardware or the
line, not at one more restart; the flag tells the agent so.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Dict, List

from support_desk.config import DeskSettings
from support_desk.store import DeskStore


async def repeat_counts(store: DeskStore, settings: DeskSettings, cases: List[Dict[str, Any]]) -> Dict[int, int]:
    """Case id → its place among its SN's cases in the repeat window, only for the cases
    at or past the threshold (``settings.yml`` ``repeat_flag``)."""
    counts = await store.serial_case_counts(cases, timedelta(days=settings.repeat_days))
    return {case_id: n for case_id, n in counts.items() if n >= settings.repeat_cases}


async def case_history(store: DeskStore, settings: DeskSettings, case: Dict[str, Any]) -> Dict[str, Any]:
    """Earlier cases of the merchant or SN, the conversation's bot runs, the repeat flag."""
    return {
        "cases": await store.earlier_cases(case),
        "runs": await store.diagnostics_runs(case["sender_id"]),
        "repeat": (await repeat_counts(store, settings, [case])).get(case["id"]),
        "repeat_days": settings.repeat_days,
    }


def ordinal(n: int) -> str:
    """English ordinal: 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"

"""A new run of the checks: error 1000 is back after an earlier run finished.

The checks keep their answers in slots, and the domain carries slots over into a new
session, so without a reset a repeat report would find the old "fixed at the network
step" and end at once. ``action_reset_checks`` runs right before ``diagnostics_form``
starts (data/rules/) and clears the slots of one run; what the merchant told about
themselves stays. Which slot is which is declared once, in ``actions/run_slots.yml``.
The desk keeps every run's outcome (``POST /api/outcomes`` per run), so history is not
lost with the slots.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Text

import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

RUN_SLOTS_FILE = Path(__file__).with_name("run_slots.yml")


@lru_cache(maxsize=2)
def slot_scopes(path: Path = RUN_SLOTS_FILE) -> Dict[str, List[str]]:
    """``{"merchant": [...], "run": [...]}`` from the YAML file (read once)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {"merchant": list(data.get("merchant") or []), "run": list(data.get("run") or [])}


class ActionResetChecks(Action):
    """Clears the slots of the previous run so the checks start again from step 1."""

    def name(self) -> Text:
        """Name of the action in the domain."""
        return "action_reset_checks"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        """One ``SlotSet(slot, None)`` per run slot, set or not.

        Always every slot, never an empty list: an action that returns nothing and says
        nothing looks like one whose action server was down
        (policies/action_server_down.py).
        """
        return [SlotSet(slot, None) for slot in slot_scopes()["run"]]

"""A new run of the checks: which slots are cleared, which are kept, and the form after it."""

from __future__ import annotations

from pathlib import Path

import yaml
from rasa_sdk.events import SlotSet

from actions.diagnostics import ValidateDiagnosticsForm
from actions.new_run import ActionResetChecks, slot_scopes

ROOT = Path(__file__).resolve().parent.parent

# What a merchant who fixed the terminal at the network step and rated 5 leaves behind.
FINISHED_RUN = {
    "network_ok": True,
    "diagnostics_outcome": "resolved",
    "fixed_step": "network",
    "needs_person": False,
    "rating": 5.0,
    "ticket": "PX-ABC234",
    "problem_summary": "刷卡报1000",
    "merchant_id": "898310048160123",
    "terminal_serial": "SN12345678",
    "contact": "13812345678",
    "terminal_model": "pax_a920",
    "language": "en",
}


def domain_slots() -> set:
    slots = set()
    for path in (ROOT / "domain").glob("*.yml"):
        slots |= set((yaml.safe_load(path.read_text("utf-8")) or {}).get("slots") or {})
    return slots


def test_every_slot_is_the_merchants_or_the_runs_exactly_once():
    scopes = slot_scopes()
    merchant, run = set(scopes["merchant"]), set(scopes["run"])
    assert not merchant & run
    assert len(scopes["run"]) == len(run) and len(scopes["merchant"]) == len(merchant)
    assert merchant | run == domain_slots()


async def test_reset_clears_every_run_slot_and_keeps_the_merchant(make_tracker, dispatcher, domain):
    tracker = make_tracker(slots=FINISHED_RUN, intent="start_diagnostics")
    events = await ActionResetChecks().run(dispatcher, tracker, domain)
    assert events == [SlotSet(slot, None) for slot in slot_scopes()["run"]]
    cleared = {event["name"] for event in events}
    assert {"network_ok", "fixed_step", "rating", "ticket", "diagnostics_outcome"} <= cleared
    assert not cleared & {"merchant_id", "terminal_serial", "contact", "terminal_model", "language"}
    assert dispatcher.messages == []


async def test_reset_on_a_first_run_still_leaves_events(make_tracker, dispatcher, domain):
    # An action that returns nothing and says nothing reads as "action server down".
    assert await ActionResetChecks().run(dispatcher, make_tracker(), domain)


async def test_after_the_reset_the_form_asks_the_first_step_and_skips_the_model(make_tracker, dispatcher, domain):
    slots = dict(FINISHED_RUN)
    for event in await ActionResetChecks().run(dispatcher, make_tracker(slots=slots), domain):
        slots[event["name"]] = event["value"]
    form = ValidateDiagnosticsForm()
    tracker = make_tracker(slots=slots, active_loop="diagnostics_form")
    required = await form.required_slots(form.domain_slots(domain), dispatcher, tracker, domain)
    assert [s for s in required if slots.get(s) is None][0] == "network_ok"
    assert "terminal_model" not in [s for s in required if slots.get(s) is None]
    # Without the reset the old answer ends the checks at once (the reported bug).
    stale = make_tracker(slots=FINISHED_RUN, active_loop="diagnostics_form")
    required = await form.required_slots(form.domain_slots(domain), dispatcher, stale, domain)
    assert [s for s in required if FINISHED_RUN.get(s) is None] == []

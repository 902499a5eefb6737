"""The form validators read their forms' slots from domain/, as Rasa sends no domain."""

from __future__ import annotations

from dataclasses import replace

import pytest
from rasa_sdk.events import SlotSet

from actions import form_slots
from actions.handoff import ValidateHandoffForm
from actions.settings import load_settings


def test_the_forms_are_read_as_rasa_reads_them(domain):
    rasa_forms = {name: form["required_slots"] for name, form in domain["forms"].items()}
    assert form_slots.forms_in(load_settings(environ={}).domain_dir) == rasa_forms
    assert set(rasa_forms) == {"diagnostics_form", "handoff_form", "region_form"}


async def test_a_validator_works_on_a_call_without_the_domain(make_tracker, dispatcher):
    tracker = make_tracker(
        slots={"terminal_serial": "0820ABC12345", "contact": "13812345678", "requested_slot": "contact"},
        events=[{"event": "user", "text": "13812345678"}, {"event": "slot", "name": "contact", "value": "13812345678"}],
        active_loop="handoff_form",
    )
    events = await ValidateHandoffForm().run(dispatcher, tracker, {})
    # The merchant reference is known, so the next question is the summary.
    assert events == [SlotSet("contact", "13812345678"), SlotSet("requested_slot", "problem_summary")]


def test_a_form_missing_from_the_domain_files_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "core.yml").write_text("version: '3.1'\nforms:\n  other_form:\n    required_slots: [a]\n")
    settings = replace(load_settings(environ={}), domain_dir=tmp_path)
    monkeypatch.setattr(form_slots, "current_settings", lambda: settings)
    with pytest.raises(KeyError, match="handoff_form"):
        ValidateHandoffForm().domain_slots({})


def test_the_action_server_registers_exactly_the_domains_custom_actions(domain):
    from rasa_sdk.executor import ActionExecutor

    executor = ActionExecutor()
    executor.register_package("actions")
    listed = {next(iter(a)) if isinstance(a, dict) else a for a in domain["actions"]}
    assert set(executor.actions) == listed

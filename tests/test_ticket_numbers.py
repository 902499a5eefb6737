"""The ticket entity pattern the NLU reads (data/nlu/entities.yml) takes every ticket the
action server and the desk make: a merchant's own (PX-…) and an outage's shared case (INC-…)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from common.tickets import new_incident_ticket, new_ticket

ENTITIES = Path(__file__).parent.parent / "data" / "nlu" / "entities.yml"


def ticket_pattern() -> re.Pattern:
    [entry] = [e for e in yaml.safe_load(ENTITIES.read_text(encoding="utf-8"))["nlu"] if e.get("regex") == "ticket"]
    [pattern] = [line.lstrip("- ").strip() for line in entry["examples"].splitlines() if line.strip()]
    # config.yml: RegexEntityExtractor with case_sensitive: false
    return re.compile(pattern, re.IGNORECASE)


def test_every_made_ticket_is_read_in_a_sentence_and_lower_case():
    pattern = ticket_pattern()
    for ticket in [new_ticket() for _ in range(200)] + [new_incident_ticket() for _ in range(200)]:
        assert pattern.search(f"工单{ticket}怎么样了").group(0) == ticket
        assert pattern.search(f"any news on {ticket.lower()}?").group(0) == ticket.lower()
        assert pattern.fullmatch(ticket)


def test_look_alikes_are_not_tickets():
    pattern = ticket_pattern()
    for text in ["XPX-7K2Q9M", "PX-7K2Q9M1", "INC-7K2Q", "INCX-7K2Q9M", "PX-7K2Q0M", "ABC-7K2Q9M"]:
        assert pattern.search(text) is None, text

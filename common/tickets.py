"""Ticket numbers: made by the action server (so a merchant gets one while the desk is
down) and kept by the desk as the case's idempotency key."""

from __future__ import annotations

import secrets

# Crockford base32 without look-alikes: tickets are read out over the phone.
_TICKET_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


TICKET_PREFIX = "PX-"
# An outage's shared case: every merchant linked to the incident holds this one.
INCIDENT_TICKET_PREFIX = "INC-"


def _code() -> str:
    return "".join(secrets.choice(_TICKET_ALPHABET) for _ in range(6))


def new_ticket() -> str:
    """A human-readable ticket number such as ``PX-7K2Q9M``."""
    return TICKET_PREFIX + _code()


def new_incident_ticket() -> str:
    """The ticket of an incident's case, such as ``INC-7K2Q9M``."""
    return INCIDENT_TICKET_PREFIX + _code()

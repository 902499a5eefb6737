"""Ticket numbers: made by the action server (so a merchant gets one while the desk is
down) and kept by the desk as the case's idempotency key."""

from __future__ import annotations

import secrets

# Crockford base32 without look-alikes: tickets are read out over the phone.
_TICKET_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ticket() -> str:
    """A human-readable ticket number such as ``PX-7K2Q9M``."""
    return "PX-" + "".join(secrets.choice(_TICKET_ALPHABET) for _ in range(6))

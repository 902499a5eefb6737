"""Validate the events of Rasa's HTTP API against a schema checked once, not per request.

``POST /conversations/{id}/tracker/events`` (how the desk sends agent replies and the
"it is over" notices of an incident), ``PUT .../tracker/events`` and ``POST .../execute``
call ``rasa.server.validate_events_in_request_body``, which calls ``jsonschema.validate``.
That re-checks Rasa's constant events schema against the JSON Schema meta-schema on every
request before it looks at the body: py-spy on the Rasa process while the desk appended
notices (2026-12-02) put 83 % of the append's CPU in that meta-schema check. The
replacement checks the schema once, keeps the validator, and raises the same
``ErrorResponse`` with the same message for a malformed body (``jsonschema.validate``'s
own choice of error: ``best_match`` of the validator's errors).
"""

from __future__ import annotations

from functools import lru_cache
from http import HTTPStatus
from typing import Any

import rasa.server
from jsonschema import exceptions, validators
from rasa.shared.utils.schemas.events import EVENTS_SCHEMA

_UPSTREAM = rasa.server.validate_events_in_request_body


@lru_cache(maxsize=1)
def events_validator() -> Any:
    """The validator of Rasa's events schema, the schema itself checked once."""
    cls = validators.validator_for(EVENTS_SCHEMA)
    cls.check_schema(EVENTS_SCHEMA)
    return cls(EVENTS_SCHEMA)


def validate_events_in_request_body(request: Any) -> None:
    """Drop-in for ``rasa.server.validate_events_in_request_body`` (same verdict, same error)."""
    events = request.json if isinstance(request.json, list) else [request.json]
    error = exceptions.best_match(events_validator().iter_errors(events))
    if error is not None:
        raise rasa.server.ErrorResponse(
            HTTPStatus.BAD_REQUEST,
            "BadRequest",
            f"Failed to validate the events format. For more information about the format visit the docs. Error: {error}",
            help_url=rasa.server._docs("/pages/http-api"),
        ) from error


def install() -> None:
    """Use the cached validator in this process (idempotent)."""
    rasa.server.validate_events_in_request_body = validate_events_in_request_body


def upstream() -> Any:
    """Rasa's own implementation, kept for the equivalence test."""
    return _UPSTREAM

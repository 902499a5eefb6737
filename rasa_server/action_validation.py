"""Validate action-server answers against a schema checked once, not on every call.

Rasa 3.6's ``RemoteAction._validate_action_result`` calls ``jsonschema.validate``, which
re-checks Rasa's (constant, large) events schema against the JSON Schema 2020-12 meta-schema
on every custom action call before validating the answer. Measured here: ~29 ms of the
~30 ms per call is that meta-schema check — more than NLU and the policies together for a
form turn. The replacement builds the validator once and raises the same ``ValidationError``
with the same message for a malformed answer.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Text

from jsonschema import ValidationError, exceptions, validators
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL

_UPSTREAM = RemoteAction._validate_action_result


@lru_cache(maxsize=1)
def action_result_validator() -> Any:
    """The validator for Rasa's action-server answer format, schema-checked once."""
    schema = RemoteAction.action_response_format_spec()
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_action_result(self: RemoteAction, result: Dict[Text, Any]) -> bool:
    """Drop-in for ``RemoteAction._validate_action_result`` (same result, same errors)."""
    error = exceptions.best_match(action_result_validator().iter_errors(result))
    if error is None:
        return True
    error.message += (
        f". Failed to validate Action server response from API, "
        f"make sure your response from the Action endpoint is valid. "
        f"For more information about the format visit "
        f"{DOCS_BASE_URL}/custom-actions"
    )
    raise error


def install() -> None:
    """Use the cached validator in this process (idempotent)."""
    RemoteAction._validate_action_result = validate_action_result  # type: ignore[assignment]


def upstream() -> Any:
    """Rasa's own implementation, kept for the equivalence test."""
    return _UPSTREAM


__all__ = ["ValidationError", "install", "upstream", "validate_action_result"]

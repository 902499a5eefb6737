"""Validate action-server answers against a schema checked once, not on every call.

Rasa 3.6's ``RemoteAction._validate_action_result`` calls ``jsonschema.validate``, which
re-checks Rasa's (constant, large) events schema against the JSON Schema 2020-12 meta-schema
on every custom action call before validating the answer. Measured here: ~29 ms of the
~30 ms per call is that meta-schema check — more than NLU and the policies together for a
form turn. The replacement builds the validator once and raises the same ``ValidationError``
with the same message for a malformed answer.

Even with the validator built once, the events' ``items`` is a ``oneOf`` of ~23 event
sub-schemas, so jsonschema tries every sub-schema on every event. Each sub-schema pins
``event`` to its own constant and the event schema requires ``event``, so an event can only
ever match the sub-schema of its own name: ``accepts`` validates the answer without that
``oneOf`` and then each event against the one sub-schema its name selects. Whether the
schema really has that shape is checked when the dispatch is built (``_dispatch``); where it
has not, the full validator decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Text

from jsonschema import ValidationError, exceptions, validators
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL

_UPSTREAM = RemoteAction._validate_action_result

# Where the events' oneOf sits in Rasa's answer schema (validator's schema_path).
_EVENTS_ONE_OF = ["properties", "events", "items", "oneOf"]
# Keywords whose result depends on what the oneOf's branches evaluated: next to them the
# oneOf cannot be checked apart from the rest of the event schema.
_COUPLED_TO_ONE_OF = {"unevaluatedProperties", "unevaluatedItems"}


@lru_cache(maxsize=1)
def action_result_validator() -> Any:
    """The validator for Rasa's action-server answer format, schema-checked once."""
    schema = RemoteAction.action_response_format_spec()
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@dataclass(frozen=True)
class _Dispatch:
    document: Any  # the answer schema with the events' oneOf left out
    # event name -> validator for it (its own branch, or the whole event schema when
    # several branches claim the name); None when the branch checks nothing but the name
    by_name: Dict[str, Optional[Any]]


def _pinned_names(branch: Mapping[str, Any]) -> Optional[List[str]]:
    """The event names a oneOf branch allows, or None if it does not pin ``event``."""
    pin = branch.get("properties", {}).get("event") if isinstance(branch, dict) else None
    if not isinstance(pin, dict):
        return None
    names = [pin["const"]] if "const" in pin else pin.get("enum")
    if not names or not all(isinstance(name, str) for name in names):
        return None
    return list(names)


def _only_checks_the_name(branch: Mapping[str, Any]) -> bool:
    return (
        set(branch) <= {"properties", "required"}
        and set(branch["properties"]) == {"event"}
        and set(branch.get("required", ())) <= {"event"}
    )


@lru_cache(maxsize=1)
def _dispatch() -> Optional[_Dispatch]:
    """Split the answer schema on the event name, or None where that is not equivalent.

    Precondition (checked here, on the schema Rasa actually ships): the events' ``items``
    is ``type: object``, has a ``oneOf``, requires ``event`` (itself or in every branch),
    has no keyword coupled to the ``oneOf`` (``unevaluated*``), and every branch pins
    ``event`` with ``const`` or ``enum`` of strings. Then a branch that does not list an
    event's name fails on it, so the ``oneOf`` holds iff exactly one of the branches
    listing that name holds. A name one branch claims is checked against that branch; a
    name several branches claim falls back to the whole event schema (exact ``oneOf``).
    If any branch does not pin ``event``, it could match every event, so there is no
    dispatch at all: None, and the full validator decides.
    """
    full = action_result_validator()
    schema = full.schema
    events = schema.get("properties", {}).get("events", {})
    item = events.get("items")
    if not isinstance(item, dict) or not isinstance(item.get("oneOf"), list):
        return None
    if item.get("type") != "object" or _COUPLED_TO_ONE_OF & set(item):
        return None
    branches = item["oneOf"]
    if "event" not in item.get("required", ()) and not all("event" in branch.get("required", ()) for branch in branches):
        return None
    claims: Dict[str, List[Mapping[str, Any]]] = {}
    for branch in branches:
        names = _pinned_names(branch)
        if names is None:
            return None
        for name in set(names):
            claims.setdefault(name, []).append(branch)

    # evolve() keeps the root's resolver, so a $ref inside a branch still resolves
    by_name: Dict[str, Optional[Any]] = {}
    for name, owners in claims.items():
        if len(owners) > 1:
            by_name[name] = full.evolve(schema=item)
        elif _only_checks_the_name(owners[0]):
            by_name[name] = None
        else:
            by_name[name] = full.evolve(schema=owners[0])
    without_one_of = {key: value for key, value in item.items() if key != "oneOf"}
    document = {
        **schema,
        "properties": {
            **schema["properties"],
            "events": {**events, "items": without_one_of},
        },
    }
    return _Dispatch(document=full.evolve(schema=document), by_name=by_name)


_UNKNOWN = object()


def accepts(result: Any) -> bool:
    """Whether Rasa's action-answer schema accepts ``result`` (upstream's verdict, faster)."""
    dispatch = _dispatch()
    if dispatch is None:
        return bool(action_result_validator().is_valid(result))
    if not dispatch.document.is_valid(result):
        return False
    # The document check passed, so result is a dict and "events" (if there) a list of
    # dicts; a missing or non-string name fails every branch's required/pin.
    for event in result.get("events", ()):
        name = event.get("event")
        check: Any = dispatch.by_name.get(name, _UNKNOWN) if isinstance(name, str) else _UNKNOWN
        if check is _UNKNOWN:
            return False
        if check is not None and not check.is_valid(event):
            return False
    return True


def _name_the_bad_event_name(error: ValidationError) -> None:
    # Upstream says "{...} is not valid under any of the given schemas" for an event whose
    # name no branch knows; say which name is wrong instead.
    dispatch = _dispatch()
    if dispatch is None or list(error.schema_path) != _EVENTS_ONE_OF:
        return
    event = error.instance
    if not isinstance(event, dict) or "event" not in event:
        return
    name = event["event"]
    if isinstance(name, str) and name in dispatch.by_name:
        return
    known = ", ".join(sorted(dispatch.by_name))
    what = "the unknown" if isinstance(name, str) else "a non-string"
    error.message = f"event {event!r} has {what} event name {name!r}; known events: {known}"


def validate_action_result(self: RemoteAction, result: Dict[Text, Any]) -> bool:
    """Drop-in for ``RemoteAction._validate_action_result`` (same verdict, same errors).

    Valid answers are decided by ``accepts``. An answer it rejects goes through the full
    validator, so the raised error is upstream's (only an unknown or non-string event
    name gets a message that names it); that path is as slow as before, and rare.
    """
    if accepts(result):
        return True
    error = exceptions.best_match(action_result_validator().iter_errors(result))
    if error is None:
        # The full schema has the last word, as upstream; accepts() never being stricter
        # is what the tests check.
        return True
    _name_the_bad_event_name(error)
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


__all__ = ["ValidationError", "accepts", "install", "upstream", "validate_action_result"]

"""Form validators that read their forms' slots from the domain files.

rasa-sdk's ``FormValidationAction`` finds the form's required slots in the domain Rasa
sends with the call. Sending it (``send_domain``) costs ~48 kB of JSON to write, send
and parse on every form turn, and the slot list is all the validators read of it. The
action server ships with the same ``domain/`` files the model was trained on, so the
validators read that list there once.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Text

import yaml
from rasa_sdk import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.settings import current_settings


@lru_cache(maxsize=4)
def forms_in(domain_dir: Path) -> Dict[str, List[str]]:
    """Every form's required slots, from all YAML files in ``domain_dir`` (read once)."""
    forms: Dict[str, List[str]] = {}
    for path in sorted(domain_dir.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, form in (data.get("forms") or {}).items():
            forms[name] = list((form or {}).get("required_slots") or [])
    return forms


class FormSlotsFromDomainFiles(FormValidationAction):
    """Base for the form validators: the form's slots come from ``domain/``, not the call.

    Subclass it instead of ``FormValidationAction`` and list the validator in the domain
    without ``send_domain``; everything else works as in rasa-sdk::

        class ValidateHandoffForm(FormSlotsFromDomainFiles):
            def name(self) -> Text:
                return "validate_handoff_form"
    """

    @abstractmethod
    def name(self) -> Text:
        """Name of the validation action: ``validate_<form>``."""
        # Abstract, so rasa-sdk's action server does not register the base class itself.

    def domain_slots(self, domain: DomainDict) -> List[Text]:
        """The form's required slots as listed in the domain files."""
        form, domain_dir = self.form_name(), current_settings().domain_dir
        forms = forms_in(domain_dir)
        if form not in forms:
            raise KeyError(f"form {form!r} is not in {domain_dir}")
        return forms[form]

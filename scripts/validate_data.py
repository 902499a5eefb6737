"""``rasa data validate`` with one blind spot closed and two Rasa 3.6 artefacts named.

Rasa's validator counts a response as used only when a story or rule names it, so every
response a custom action sends (``dispatcher.utter_message(response=...)``) and every
``utter_ask_<slot>`` a form sends is reported as unused. This script runs the same
validation, then:

* accepts "not used in any story or rule" for a response only when the action code, a
  policy of ``policies/`` or a form really uses it, and fails for any other unused response;
* fails when the action code names a response the domain does not have;
* accepts "not found in the NLU training data" for an intent that a registered NLU
  component of ``config.yml`` sets by rule (``nlu_components.error_codes``) instead of DIET
  learning it;
* accepts the one duplicate-intent warning Rasa 3.6 always emits for a retrieval intent
  listed in the domain (``ResponsesSyncImporter`` merges the intent in a second time);
* ignores the warnings Rasa itself marks as expected (``rasa.utils.common.EXPECTED_WARNINGS``);
* fails on every other warning, like ``--fail-on-warnings``.

Exit code 0 when clean; 1 with the offending messages otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path
from typing import Iterable, List, Set

# Any quoted response name in the action code: passed as response=..., or kept in a
# variable or table first.
RESPONSE_IN_CODE = re.compile(r"""["'](utter_[\w/]+)["']""")
UNUSED = re.compile(r"The utterance '(utter_[\w/]+)' is not used in any story or rule\.")
NO_EXAMPLES = re.compile(r"The intent '([\w/]+)' is listed in the domain file, but is not found in the NLU training data\.")
RETRIEVAL_DUPLICATE = re.compile(r"The following duplicated intents have been found across multiple domain files: (.+)")


def responses_named_in_code(paths: Iterable[Path]) -> Set[str]:
    """Response names that custom actions send."""
    return {name for path in paths for name in RESPONSE_IN_CODE.findall(path.read_text("utf-8"))}


def main() -> int:
    """Run the validation and print what is wrong."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="domain")
    parser.add_argument("--data", default="data")
    parser.add_argument("--config", default="config.yml")
    parser.add_argument("--actions", default="actions")
    parser.add_argument("--policies", default="policies")
    args = parser.parse_args()

    from rasa.cli.utils import validate_files
    from rasa.shared.importers.importer import TrainingDataImporter
    from rasa.utils.common import EXPECTED_WARNINGS

    from rasa.shared.utils.io import read_config_file

    from nlu_components.error_codes import INTENT_NAME, OtherErrorCodeClassifier

    # Intents a component of the pipeline sets by rule (only when the pipeline has it).
    pipeline = {item.get("name") for item in read_config_file(args.config).get("pipeline") or []}
    classifier = f"{OtherErrorCodeClassifier.__module__}.{OtherErrorCodeClassifier.__name__}"
    component_intents = {INTENT_NAME} if classifier in pipeline else set()

    importer = TrainingDataImporter.load_from_config(args.config, args.domain, [args.data])
    problems: List[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            validate_files(fail_on_warnings=False, max_history=None, importer=importer)
        except SystemExit as exit_:
            if exit_.code:
                problems.append("rasa data validate reported errors (see above)")
        domain = importer.get_domain()

    form_asks = {f"utter_ask_{slot}" for form in domain.forms.values() for slot in form.get("required_slots", [])}
    # Custom actions send responses; so do the assistant's own policies (predicted).
    in_code = responses_named_in_code([*Path(args.actions).glob("*.py"), *Path(args.policies).glob("*.py")])
    used_outside_stories = in_code | form_asks
    retrieval_intents = set(domain.retrieval_intents)

    for warning in caught:
        message = str(warning.message).strip()
        if issubclass(warning.category, DeprecationWarning) or any(
            issubclass(warning.category, category) and re.match(pattern, message) for category, pattern in EXPECTED_WARNINGS
        ):
            continue
        unused = UNUSED.search(message)
        if unused and unused.group(1) in used_outside_stories:
            continue
        no_examples = NO_EXAMPLES.search(message)
        if no_examples and no_examples.group(1) in component_intents:
            continue
        duplicate = RETRIEVAL_DUPLICATE.search(message)
        if duplicate and {i.strip() for i in duplicate.group(1).split(",")} <= retrieval_intents:
            continue
        problems.append(message)

    problems += [f"actions send response '{name}' which the domain does not define" for name in sorted(in_code - set(domain.responses))]
    for problem in problems:
        print(f"VALIDATION: {problem}", file=sys.stderr)
    print(
        f"validated: {len(domain.intents)} intents, {len(domain.responses)} responses, "
        f"{len(in_code)} sent by actions, {len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

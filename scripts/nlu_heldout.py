"""Score the held-out NLU sets (tests/nlu_heldout/<lang>.yml) with ``rasa test nlu``.

The held-out sets are never trained on. For each language this runs ``rasa test nlu``
against the trained model, reads the intent and response-selection (``faq/*``)
reports, prints macro-F1 per language and fails when either is under ``--min-f1``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict

HELDOUT = Path("tests/nlu_heldout")


def macro_f1(report_path: Path) -> float:
    """The ``macro avg`` F1 of a Rasa classification report."""
    return json.loads(report_path.read_text(encoding="utf-8"))["macro avg"]["f1-score"]


def score(language: str, model: str, out: Path) -> Dict[str, float]:
    """Run ``rasa test nlu`` on one language's held-out set and read its macro-F1s.

    Through ``python -m rasa_server``, the runtime ``make run`` serves with: the parses
    scored are the parses merchants get."""
    target = out / language
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rasa_server",
            "test",
            "nlu",
            "--model",
            model,
            "--nlu",
            str(HELDOUT / f"{language}.yml"),
            "--out",
            str(target),
            "--domain",
            "domain",
            "--no-plot",
        ],
        check=True,
    )
    return {
        "intent_macro_f1": macro_f1(target / "intent_report.json"),
        "faq_macro_f1": macro_f1(target / "response_selection_report.json"),
    }


def main() -> int:
    """Score every language; exit 1 when one falls under the threshold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", default="results/nlu")
    parser.add_argument("--min-f1", type=float, default=0.90)
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    languages = sorted(path.stem for path in HELDOUT.glob("*.yml"))
    if not languages:
        print(f"no held-out sets in {HELDOUT}", file=sys.stderr)
        return 1
    results = {language: score(language, args.model, out) for language in languages}
    (out / "summary.json").write_text(json.dumps(results, indent=2), encoding="utf-8")

    failed = False
    print(f"\n{'language':<10}{'intent macro-F1':>18}{'faq macro-F1':>15}")
    for language, figures in results.items():
        low = [k for k, v in figures.items() if v < args.min_f1]
        failed |= bool(low)
        print(
            f"{language:<10}{figures['intent_macro_f1']:>18.3f}{figures['faq_macro_f1']:>15.3f}{'  < ' + str(args.min_f1) if low else ''}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""A model's figures for the retraining gate in one process: the held-out NLU sets
(tests/nlu_heldout/<lang>.yml, as ``scripts/nlu_heldout.py`` scores them) and the test
stories (as ``rasa test core --stories tests/stories``), the model loaded once.

``scripts/nlu_heldout.py`` and ``make test-stories`` start ``rasa test`` once per language
and once for the stories: a Python start, TensorFlow's import and a model load each, which
the desk's gate (support_desk/training.py) paid three times per model. Here it is once; the
runtime fixes are applied as ``python -m rasa_server`` applies them, so the parses scored
are the parses merchants get. Writes ``<out>/nlu/summary.json`` (the held-out script's
format), ``<out>/nlu/<lang>/*_report.json`` and ``<out>/stories/story_report.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Dict

HELDOUT = Path("tests/nlu_heldout")
STORIES = Path("tests/stories")


def macro_f1(report_path: Path) -> float:
    """The ``macro avg`` F1 of a Rasa classification report."""
    return json.loads(report_path.read_text(encoding="utf-8"))["macro avg"]["f1-score"]


async def score(model: str, out: Path, domain: str) -> Dict[str, Dict[str, float]]:
    """Score the held-out sets and the stories; the held-out summary."""
    from rasa.core.agent import Agent
    from rasa.core.test import test as core_test
    from rasa.nlu.test import run_evaluation

    agent = Agent.load(model_path=model)
    if not agent.is_ready():
        raise SystemExit(f"the model {model} could not be loaded")
    summary: Dict[str, Dict[str, float]] = {}
    for language in sorted(path.stem for path in HELDOUT.glob("*.yml")):
        target = out / "nlu" / language
        target.mkdir(parents=True, exist_ok=True)
        await run_evaluation(
            str(HELDOUT / f"{language}.yml"), agent.processor, output_directory=str(target), disable_plotting=True, domain_path=domain
        )
        summary[language] = {
            "intent_macro_f1": macro_f1(target / "intent_report.json"),
            "faq_macro_f1": macro_f1(target / "response_selection_report.json"),
        }
    (out / "nlu" / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    stories = out / "stories"
    stories.mkdir(parents=True, exist_ok=True)
    await core_test(str(STORIES), agent, out_directory=str(stories), disable_plotting=True)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--domain", default="domain")
    args = parser.parse_args()

    from rasa_server.replacements import ReplacementCheckError, install_all

    try:
        install_all()
    except ReplacementCheckError as error:
        print(f"rasa_server: {error}", file=sys.stderr)
        return 1
    summary = asyncio.run(score(args.model, Path(args.out), args.domain))
    report = json.loads((Path(args.out) / "stories" / "story_report.json").read_text(encoding="utf-8"))
    accuracy = report.get("conversation_accuracy", {})
    for language, figures in summary.items():
        print(f"{language}: intent macro-F1 {figures['intent_macro_f1']:.3f}, faq macro-F1 {figures['faq_macro_f1']:.3f}")
    print(f"stories: {accuracy.get('correct')}/{accuracy.get('total')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The retraining tests' figures (issue 18): the running model's held-out and story figures,
changed ones, and a scorer that gives them (the seam of ``support_desk.training``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

GOOD = {
    "zh": {"intent_macro_f1": 0.971, "faq_macro_f1": 0.927},
    "en": {"intent_macro_f1": 0.927, "faq_macro_f1": 0.935},
    "stories": {"correct": 19, "total": 19},
}


def figures(**changes: float) -> Dict[str, Any]:
    """GOOD with some figures changed: ``zh_intent=0.9``, ``stories=18``."""
    result = {lang: dict(v) for lang, v in GOOD.items()}
    for key, value in changes.items():
        if key == "stories":
            result["stories"]["correct"] = int(value)
        else:
            lang, kind = key.split("_")
            result[lang][f"{kind}_macro_f1"] = value
    return result


class FakeScorer:
    """The scorer seam: the candidate's and the running model's figures as given; records
    which models were scored."""

    def __init__(self, candidate: Dict[str, Any], running: Dict[str, Any] = GOOD) -> None:
        self.candidate, self.running = candidate, running
        self.scored: List[str] = []

    async def score(self, model: str, out: Path) -> Dict[str, Any]:
        self.scored.append(model)
        return self.candidate if "/candidates/" in model else self.running

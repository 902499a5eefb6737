"""The trained model (``make train``) and the held-out NLU messages, for tests that compare
our runtime fixes with upstream on the real thing."""
from __future__ import annotations

from pathlib import Path
from typing import List

MODEL = Path(__file__).resolve().parent.parent / "models" / "pos1000.tar.gz"
HELDOUT = Path(__file__).resolve().parent / "nlu_heldout"


def held_out_texts() -> List[str]:
    """Every held-out example's text, Chinese then English."""
    from rasa.shared.nlu.training_data.loading import load_data

    return [message.get("text") for language in ("zh", "en")
            for message in load_data(str(HELDOUT / f"{language}.yml")).intent_examples]

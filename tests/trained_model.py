"""The trained model (``make train``) and the held-out NLU messages, for tests that compare
our runtime fixes with upstream on the real thing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

HELDOUT = Path(__file__).resolve().parent / "nlu_heldout"


def held_out_texts() -> List[str]:
    """Every held-out example's text, Chinese then English."""
    from rasa.shared.nlu.training_data.loading import load_data

    return [message.get("text") for language in ("zh", "en") for message in load_data(str(HELDOUT / f"{language}.yml")).intent_examples]


def story_turns(agent: Any) -> List[Any]:
    """The tracker before each action of the test stories (``tests/stories``) but the first,
    as ``DialogueStateTracker``s on the agent's slots."""
    from rasa.core.test import _create_data_generator
    from rasa.shared.core.events import ActionExecuted
    from rasa.shared.core.trackers import DialogueStateTracker

    stories = _create_data_generator("tests/stories", agent).generate_story_trackers()
    assert len(stories) >= 19
    turns = []
    for story in stories:
        events = list(story.events)
        turns += [
            DialogueStateTracker.from_events(story.sender_id, events[:index], agent.domain.slots)
            for index, event in enumerate(events)
            if isinstance(event, ActionExecuted) and index > 0
        ]
    return turns

"""``DialogueStateTracker.copy`` without replaying the conversation.

Before running each action, Rasa's processor copies the tracker (``_run_action``; forms do
too when they activate) so that a rejected action leaves no trace. Upstream's copy builds an
empty tracker and replays every event of the conversation onto it: ~100 ``apply_to`` calls
for a handoff conversation, two to four times a message (py-spy: ~5 % of a message's CPU).

A tracker's state is, by Rasa's own rule, what replaying its events gives ("MUST be
re-creatable by processing all the events", ``DialogueStateTracker.__init__``). So the
copy here takes the state as it is: the same event objects in a new deque, each slot
copied with its value and whether it was set, and the same pause, follow-up action, latest
action, latest user and bot messages and active loop, with the containers that events
change in place (the latest action, the active loop) copied. Like upstream's copy, it has
no model or assistant id and no sender source. A tracker whose history is capped
(``max_event_history``; replaying what is left would not give its state) or whose slots
are created on demand goes to upstream's copy.
"""

from __future__ import annotations

import copy

from rasa.shared.constants import DEFAULT_SENDER_ID
from rasa.shared.core.trackers import DialogueStateTracker

_UPSTREAM_COPY = DialogueStateTracker.copy


def copy_tracker(self: DialogueStateTracker) -> DialogueStateTracker:
    """A duplicate of the tracker, in the state replaying its events would give."""
    if self._max_event_history is not None or type(self.slots) is not dict:
        return _UPSTREAM_COPY(self)
    if type(self) is DialogueStateTracker:
        # Built without slots: ``init_copy`` would copy and reset every slot, only for the
        # copies below to replace them.
        tracker = DialogueStateTracker(
            self.sender_id or DEFAULT_SENDER_ID, (), self._max_event_history, is_rule_tracker=self.is_rule_tracker
        )
    else:
        tracker = self.init_copy()
    tracker.events.extend(self.events)
    tracker.slots = {name: copy.copy(slot) for name, slot in self.slots.items()}
    tracker._paused = self._paused
    tracker.followup_action = self.followup_action
    tracker.latest_action = None if self.latest_action is None else dict(self.latest_action)
    tracker.latest_message = self.latest_message
    tracker.latest_bot_utterance = self.latest_bot_utterance
    tracker.active_loop = copy.copy(self.active_loop)
    return tracker


def install() -> None:
    """Copy every tracker of this process this way."""
    DialogueStateTracker.copy = copy_tracker

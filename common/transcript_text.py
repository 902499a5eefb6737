"""What the merchant saw and did, in words: button payloads become the buttons' titles.

A merchant who clicks "❌ 还是报1000" sends Rasa the payload ``/inform_not_fixed``; the
transcript an agent reads (desk, console, API) shows the title of the button clicked
instead. The widget's opening payload (``/greet{"language": "zh"}``, sent by the page
and never typed) is left out. A payload that matches no button (typed by hand, or a
button of a message this process never saw) shows as a readable bracketed name, never
as ``/intent{...}``. A voice message (the platform's speech recognition, metadata
``{"voice": true}``) is shown after a microphone, "🎤 ".

Imported by the action server (``actions/handoff.transcript``), the desk's relay
(``support_desk.relay.paused_messages``) and Rasa's event broker
(``rasa_server.desk_events``), so the three agree.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

# Rasa's payload syntax: /intent, optionally followed by a JSON object of entities.
_PAYLOAD = re.compile(r"^/(?P<intent>[A-Za-z0-9_\-.]+)(?P<entities>\{.*\})?(?:@[0-9.]+)?$", re.S)
# The intent of the widget's initPayload (support_desk/chat.py): the page sends it, not the merchant.
OPENING_INTENT = "greet"
# Before the words of a voice message: the agent knows the platform's speech recognition
# wrote them, not the merchant (the channel sets metadata {"voice": true}).
VOICE_MARK = "🎤 "

Event = Dict[str, Any]


def is_payload(text: str) -> bool:
    """Is this text a Rasa payload (``/intent`` or ``/intent{...}``)?"""
    return bool(_PAYLOAD.match(text.strip()))


def buttons_of(bot_event: Optional[Event]) -> List[Dict[str, Any]]:
    """The buttons and quick replies a bot event offered (empty when it offered none)."""
    if not bot_event:
        return []
    data = bot_event.get("data") or {}
    offered: List[Dict[str, Any]] = []
    for key in ("buttons", "quick_replies"):
        value = data.get(key)
        if isinstance(value, list):
            offered.extend(item for item in value if isinstance(item, dict))
    return offered


def spoken_text(text: str, buttons: Iterable[Dict[str, Any]] = ()) -> Optional[str]:
    """The words for a user message: the text itself, the title of the button whose
    payload it is, a readable fallback for any other payload, or None for the widget's
    opening payload (nothing the merchant said)."""
    stripped = text.strip()
    match = _PAYLOAD.match(stripped)
    if not match:
        return text
    for button in buttons:
        if str(button.get("payload", "")).strip() == stripped and button.get("title"):
            return str(button["title"])
    intent = match.group("intent")
    if intent == OPENING_INTENT:
        return None
    return f"[{_readable(intent, match.group('entities'))}]"


def heard_text(event: Event, words: str) -> str:
    """The words of a user event as the agent reads them: a voice message (metadata
    ``voice``, the platform's speech recognition) is marked with ``VOICE_MARK``."""
    metadata = event.get("metadata")
    return VOICE_MARK + words if isinstance(metadata, dict) and metadata.get("voice") is True else words


def _readable(intent: str, entities: Optional[str]) -> str:
    words = intent.replace("_", " ").replace("-", " ").strip()
    if not entities:
        return words
    try:
        values = json.loads(entities)
    except (ValueError, RecursionError):
        return words
    shown = [str(v) for v in values.values() if not isinstance(v, (dict, list))] if isinstance(values, dict) else []
    return f"{words}: {', '.join(shown)}" if shown else words


def readable_messages(events: Iterable[Event]) -> Iterator[Tuple[Event, str]]:
    """User and bot message events with the text an agent should read, in order.

    Each user event is read against the buttons of the bot message before it; events
    that say nothing (the widget's opening payload, empty bot events) are skipped.
    """
    last_bot: Optional[Event] = None
    for event in events:
        kind = event.get("event")
        if kind == "bot":
            last_bot = event
            if event.get("text"):
                yield event, event["text"]
        elif kind == "user" and event.get("text"):
            words = spoken_text(event["text"], buttons_of(last_bot))
            if words is not None:
                yield event, heard_text(event, words)

"""What the bot knows about the merchant it talks to: numbers, region, channel, model."""

from __future__ import annotations

from typing import Dict, Optional

from rasa_sdk import Tracker

from actions.knowledge import UNKNOWN
from actions.patterns import find
from actions.regions import load_regions

# The region slot's value when the merchant said their shop is in none of the areas asked.
OTHER_REGION = "other"


def scene_merchant_id(tracker: Tracker) -> Optional[str]:
    """The merchant number of the 微信客服 contact link the merchant came through: the
    channel puts its ``scene_param`` in the metadata of the merchant's first message."""
    for event in reversed(tracker.events):
        metadata = event.get("metadata") if event.get("event") == "user" else None
        scene = metadata.get("scene_param") if isinstance(metadata, dict) else None
        if isinstance(scene, str) and find("merchant_id", scene):
            return find("merchant_id", scene)
    return None


def merchant_number(tracker: Tracker) -> Optional[str]:
    """The merchant number told in the chat, else the one of the contact link."""
    return tracker.get_slot("merchant_id") or scene_merchant_id(tracker)


def terminal_reference(tracker: Tracker) -> Optional[str]:
    """The terminal's SN, else its terminal number marked as such."""
    terminal_id = tracker.get_slot("terminal_id")
    return tracker.get_slot("terminal_serial") or (f"TID {terminal_id}" if terminal_id else None)


def merchant_region(tracker: Tracker) -> Optional[str]:
    """The region code: the one the merchant named, else the merchant number's."""
    named = tracker.get_slot("region")
    if named and named != OTHER_REGION:
        return str(named)
    return load_regions().of_merchant_number(merchant_number(tracker))


def merchant_scope(tracker: Tracker) -> Dict[str, Optional[str]]:
    """The merchant as incident scopes see it (common/incident_scope.py)."""
    model = tracker.get_slot("terminal_model")
    return {
        "region": merchant_region(tracker),
        "channel": tracker.get_latest_input_channel(),
        "gateway": None,  # nothing in a chat tells the acquirer's gateway
        "terminal_model": model if model and model != UNKNOWN else None,
    }

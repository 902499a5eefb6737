"""What agents do to a case, shared by the JSON API and the console."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from support_desk.config import DeskSettings
from support_desk.relay import RasaRelay
from support_desk.store import DeskStore


@dataclass
class Delivery:
    """The stored message or case, and whether Rasa has it yet."""

    record: Dict[str, Any]
    delivered: bool
    error: Optional[str] = None


async def claim(store: DeskStore, relay: RasaRelay, settings: DeskSettings, case_id: int, agent: str) -> Dict[str, Any]:
    """Take the case and tell the merchant that a person has joined."""
    current = await store.get_escalation(case_id)
    template = settings.agent_joined_message.get(current["language"]) or settings.agent_joined_message["zh"]
    case = await store.claim(case_id, agent, template.format(agent=agent))
    await relay.deliver_pending(case_id)
    return await store.get_escalation(case_id)


async def reply(store: DeskStore, relay: RasaRelay, case_id: int, text: str, agent: Optional[str]) -> Delivery:
    """Keep the agent's reply, then deliver it (and anything queued before it)."""
    message = await store.add_agent_reply(case_id, text, agent)
    failed = await relay.deliver_pending(case_id)
    return Delivery({**message, "delivered": message["id"] not in failed,
                     "delivery_error": failed.get(message["id"])},
                    message["id"] not in failed, failed.get(message["id"]))


async def resolve(
    store: DeskStore, relay: RasaRelay, settings: DeskSettings, case_id: int, note: str, category: Optional[str]
) -> Delivery:
    """Close the case; the bot resumes with a closing message in the merchant's language."""
    current = await store.get_escalation(case_id)
    # What the merchant wrote since an agent last looked belongs to the case record.
    await relay.collect_merchant_messages(current)
    closing = settings.closing_message.get(current["language"]) or settings.closing_message["zh"]
    await store.resolve(case_id, note, category, closing)
    failed = await relay.deliver_pending(case_id)
    case = await store.get_escalation(case_id)
    error = next(iter(failed.values()), None)
    return Delivery({**case, "bot_resumed": not failed}, not failed, error)


async def case_with_live_transcript(store: DeskStore, relay: RasaRelay, case_id: int) -> Dict[str, Any]:
    """The case, after copying in what the merchant wrote since the handoff."""
    case = await store.get_escalation(case_id)
    # Also once resolved: a message written while Rasa was away is copied in later.
    await relay.collect_merchant_messages(case)
    # Read again even when this read added nothing: Rasa's event broker may have filed
    # the same messages in the meantime.
    return await store.get_escalation(case_id)

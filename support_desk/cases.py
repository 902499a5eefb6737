"""What agents do to a case, shared by the JSON API and the console."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from support_desk.config import DeskSettings, in_language
from support_desk.relay import RasaRelay
from support_desk.store import RETURNED_TO_BOT, DeskStore
from support_desk.validation import Invalid

RATINGS = (5, 4, 3, 2, 1)


@dataclass
class Delivery:
    """The stored message or case, and whether Rasa has it yet."""

    record: Dict[str, Any]
    delivered: bool
    error: Optional[str] = None


def rating_buttons() -> List[Dict[str, str]]:
    """The 1-5 choices of the satisfaction question (the dialogue's ``rate_agent`` intent)."""
    return [{"title": f"{n} ⭐", "payload": f'/rate_agent{{"agent_rating": "{n}"}}'} for n in RATINGS]


async def _joined_text(store: DeskStore, settings: DeskSettings, language: str, agent: str) -> str:
    """ "Agent X has joined", with the name the merchant sees."""
    return in_language(settings.agent_joined_message, language).format(agent=await store.display_name(agent))


async def claim(store: DeskStore, relay: RasaRelay, settings: DeskSettings, case_id: int, agent: str) -> Dict[str, Any]:
    """Take the case and tell the merchant that a person has joined."""
    current = await store.get_escalation(case_id)
    await store.claim(case_id, agent, await _joined_text(store, settings, current["language"], agent))
    await relay.deliver_pending(case_id)
    return await store.get_escalation(case_id)


async def transfer(
    store: DeskStore, relay: RasaRelay, settings: DeskSettings, case_id: int, agent: Optional[str], to_agent: str
) -> Dict[str, Any]:
    """Hand the case to another agent; the merchant is told who has joined."""
    current = await store.get_escalation(case_id)
    await store.transfer(case_id, agent, to_agent, await _joined_text(store, settings, current["language"], to_agent))
    await relay.deliver_pending(case_id)
    return await store.get_escalation(case_id)


async def reply(store: DeskStore, relay: RasaRelay, case_id: int, text: str, agent: Optional[str]) -> Delivery:
    """Keep the agent's reply, then deliver it (and anything queued before it)."""
    message = await store.add_agent_reply(case_id, text, agent)
    failed = await relay.deliver_pending(case_id)
    error = failed.get(message["id"])
    if error is None:
        message = next(m for m in (await store.get_escalation(case_id))["transcript"] if m["id"] == message["id"])
    return Delivery({**message, "delivery_error": error}, error is None, error)


async def resolve(
    store: DeskStore,
    relay: RasaRelay,
    settings: DeskSettings,
    case_id: int,
    note: str,
    category: Optional[str],
    agent: Optional[str] = None,
) -> Delivery:
    """Close the case; the bot resumes with a closing message naming the ticket and asks
    for a 1-5 rating of the agent's help, in the merchant's language."""
    current = await store.get_escalation(case_id)
    if category == RETURNED_TO_BOT:
        raise Invalid(f"category {RETURNED_TO_BOT} is set by a hand-back, not by resolve")
    # What the merchant wrote since an agent last looked belongs to the case record.
    await relay.collect_merchant_messages(current)
    language = current["language"]
    closing = in_language(settings.closing_message, language).format(ticket=current["ticket"])
    question = {"text": in_language(settings.satisfaction_question, language), "buttons": rating_buttons()}
    await store.resolve(case_id, note, category, closing, resolved_by=agent or current["claimed_by"], rating_question=question)
    return await _resumed(store, relay, case_id)


async def hand_back(store: DeskStore, relay: RasaRelay, settings: DeskSettings, case_id: int, agent: Optional[str], note: str) -> Delivery:
    """Send an unanswered case back to the bot: the merchant is told in their language and
    the bot takes the conversation again (status resolved, category ``returned_to_bot``)."""
    current = await store.get_escalation(case_id)
    await relay.collect_merchant_messages(current)
    text = in_language(settings.handback_message, current["language"]).format(ticket=current["ticket"])
    await store.resolve(case_id, note, RETURNED_TO_BOT, text, resolved_by=agent, kind="handback")
    return await _resumed(store, relay, case_id)


async def _resumed(store: DeskStore, relay: RasaRelay, case_id: int) -> Delivery:
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

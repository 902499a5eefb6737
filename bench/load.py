"""Simulated merchants: N concurrent clients play real conversations over Rasa's REST channel.

Every message is one timed HTTP round trip (the merchant waits for the bot's answer before
typing the next one). A level stops after a bounded number of messages; nothing runs open
ended. The outcome keeps every latency, every error and what each sender said, so the caller
can check afterwards that no conversation lost a turn.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import aiohttp
import yaml

CONVERSATIONS = Path(__file__).with_name("conversations.yml")
TICKET = re.compile(r"PX-[A-Z0-9]{6}")


@dataclass
class Conversation:
    """One scripted merchant conversation (see conversations.yml)."""

    name: str
    messages: List[str]
    expect: str = "answer"


@dataclass
class LevelOutcome:
    """What one concurrency level measured."""

    clients: int
    latencies_ms: List[float] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    sent: Dict[str, List[str]] = field(default_factory=dict)
    tickets: Dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def messages(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, share: float) -> float:
        """Nearest-rank percentile of the message latencies, in milliseconds."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        rank = max(1, min(len(ordered), math.ceil(share * len(ordered))))
        return ordered[rank - 1]

    def add(self, other: "LevelOutcome") -> None:
        """Count another run of the same level (other senders) as part of this one."""
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.sent.update(other.sent)
        self.tickets.update(other.tickets)
        self.seconds += other.seconds

    def resume_at(self) -> int:
        """Where a next part of this level starts in the mix (``run_level``'s ``first``):
        past the conversations each merchant has started so far."""
        return math.ceil(len(self.sent) / self.clients)

    def summary(self) -> Dict[str, float]:
        """The figures the report prints for this level."""
        return {
            "clients": self.clients,
            "messages": self.messages,
            "p50_ms": round(self.percentile(0.50), 1),
            "p95_ms": round(self.percentile(0.95), 1),
            "p99_ms": round(self.percentile(0.99), 1),
            "throughput_msg_s": round(self.messages / self.seconds, 1) if self.seconds else 0.0,
            "errors": len(self.errors),
            "conversations": len(self.sent),
            "escalations": len(self.tickets),
        }


def load_conversations(path: Path = CONVERSATIONS) -> List[Conversation]:
    """The conversation mix from YAML."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Conversation(**item) for item in raw["conversations"]]


async def run_level(
    url: str,
    conversations: List[Conversation],
    clients: int,
    budget: int,
    tag: str,
    progress: Optional[Callable[[int], None]] = None,
    timeout: float = 30.0,
    check_answers: bool = True,
    first: int = 0,
) -> LevelOutcome:
    """Drive ``clients`` merchants until ``budget`` messages have been sent in total.

    Each client starts on a different conversation of the mix so that every level sees the
    same blend of FAQ answers, diagnostics and handoffs; merchant ``i`` starts on
    conversation ``first + i`` (a level driven in parts continues the mix where the last
    part stopped). ``check_answers`` counts a handoff without a ticket as an error (off for
    a bot that has no handoff, like the baseline).
    """
    outcome = LevelOutcome(clients=clients)
    remaining = itertools.count()
    webhook = url.rstrip("/") + "/webhooks/rest/webhook"

    async def merchant(index: int, session: aiohttp.ClientSession) -> None:
        for round_ in itertools.count():
            conversation = conversations[(first + index + round_) % len(conversations)]
            sender = f"{tag}-c{clients}-m{index}-r{round_}"
            for message in conversation.messages:
                if next(remaining) >= budget:
                    return
                outcome.sent.setdefault(sender, []).append(message)
                answer = await _send(session, webhook, sender, message, outcome, timeout)
                if progress:
                    progress(1)
                if answer is None:
                    break  # an error ends this conversation; the merchant starts another
            else:
                if check_answers:
                    _check_expectation(conversation, sender, answer, outcome)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=clients + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(merchant(index, session) for index in range(clients)))
    outcome.seconds = time.perf_counter() - started
    return outcome


async def _send(
    session: aiohttp.ClientSession, webhook: str, sender: str, message: str, outcome: LevelOutcome, timeout: float
) -> Optional[list]:
    started = time.perf_counter()
    try:
        async with session.post(
            webhook, json={"sender": sender, "message": message}, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            body = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
        outcome.errors.append(f"{sender}: {message!r}: {type(error).__name__}: {error}")
        return None
    outcome.latencies_ms.append((time.perf_counter() - started) * 1000)
    if status != 200 or not isinstance(body, list):
        outcome.errors.append(f"{sender}: {message!r}: HTTP {status}: {str(body)[:200]}")
        return None
    return body


def _check_expectation(conversation: Conversation, sender: str, answer: list, outcome: LevelOutcome) -> None:
    texts = " ".join(str(item.get("text", "")) for item in answer)
    if conversation.expect == "ticket":
        ticket = TICKET.search(texts)
        if ticket is None:
            outcome.errors.append(f"{sender}: no ticket in the last answer: {texts[:200]}")
        else:
            outcome.tickets[sender] = ticket.group()
    elif not answer:
        outcome.errors.append(f"{sender}: no answer to the last message")

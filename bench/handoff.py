"""`make bench`'s handoff part: how fast a person and a merchant reach each other.

N merchants (``handoff.merchants`` in settings.yml, 50) chat on the website widget's
channel (socket.io, as rasa-webchat does: ``session_request``, ``user_uttered``) and ask for
a person; one agent is logged in to the console with its live stream open
(``GET /console/events``). Then, ``handoff.rounds`` times per merchant, all at once:

* **merchant → agent**: the merchant writes; timed until the agent's case page has the
  words — the stream announced the case and the page's read (``/console/live/cases/{id}``)
  holds the text (Rasa's event broker → the desk → the stream → the read);
* **agent → merchant**: the agent replies through the desk API; timed until the merchant's
  socket receives it (desk → Rasa's HTTP API → socket.io).

People type at a human pace: before each message and each reply a merchant or agent
pauses a random 0–``think_s`` seconds (seeded per merchant, so every run is the same).
With ``think_s: 0`` all 50 write in the same instant, a burst that queues in the one
Rasa process (each message still goes through NLU while the bot is paused).

The stack is the production one on one host: ``python -m rasa_server run`` with the
project's endpoints.yml (its event broker) and credentials.yml, its action server, the
desk. Every wait is bounded (``timeout_s``); a message that does not arrive is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import math
import random
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Set

import aiohttp
import socketio

from bench.servers import ROOT
from bench.stack import one_host

# The shortest way to a person (the bot asks for a reference, a contact, a summary).
TO_A_PERSON = ["转人工", "商户号898310048160123", "13812345678", "从早上开始所有刷卡都报1000"]
TICKET = re.compile(r"PX-[A-Z0-9]{6}")
AGENT = "bench-agent"


@dataclass
class HandoffOutcome:
    """Latencies in milliseconds of both directions, and what went wrong."""

    to_agent_ms: List[float] = field(default_factory=list)
    to_merchant_ms: List[float] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)

    def figures(self) -> Dict[str, Any]:
        """p50 / p95 of each direction, counts and errors (for bench.json and the table)."""
        return {
            "merchant_to_agent": summary(self.to_agent_ms),
            "agent_to_merchant": summary(self.to_merchant_ms),
            "errors": len(self.errors),
            "error_examples": self.errors[:5],
        }


def summary(values: List[float]) -> Dict[str, Any]:
    """Nearest-rank p50 and p95 of ``values`` (ms), and how many there were."""
    ordered = sorted(values)

    def rank(share: float) -> float:
        return round(ordered[max(1, math.ceil(share * len(ordered))) - 1], 1) if ordered else float("nan")

    return {"count": len(ordered), "p50_ms": rank(0.5), "p95_ms": rank(0.95)}


class AgentPage:
    """One agent logged in to the console, its live stream open, reading case pages."""

    def __init__(self, desk_url: str, password: str) -> None:
        self.desk_url = desk_url
        self.password = password
        # Console cookies on 127.0.0.1: aiohttp keeps cookies of IP hosts only when unsafe.
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.waiting: Dict[int, Dict[str, asyncio.Future]] = {}
        self._reading: Set[int] = set()
        self._again: Set[int] = set()
        self._stream: "asyncio.Task[None] | None" = None
        self.connected = asyncio.Event()

    async def login(self) -> None:
        """The console's login form, CSRF token included."""
        async with self.session.get(f"{self.desk_url}/console/login") as response:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text()).group(1)
        form = {"csrf": csrf, "username": AGENT, "password": self.password}
        async with self.session.post(f"{self.desk_url}/console/login", data=form) as response:
            if "/console/login" in str(response.url):
                raise RuntimeError("the bench agent could not log in")
        self._stream = asyncio.create_task(self._follow())
        await asyncio.wait_for(self.connected.wait(), 10)

    def expect(self, case_id: int, text: str) -> "asyncio.Future[float]":
        """A future set to the moment the case page shows ``text``."""
        future: "asyncio.Future[float]" = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(case_id, {})[text] = future
        return future

    async def _follow(self) -> None:
        async with self.session.get(f"{self.desk_url}/console/events", timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as response:
            self.connected.set()
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("id") in self.waiting:
                        self._read_soon(event["id"])

    def _read_soon(self, case_id: int) -> None:
        # Like the page: one read at a time per case, another after it if more came in.
        if case_id in self._reading:
            self._again.add(case_id)
            return
        self._reading.add(case_id)
        asyncio.create_task(self._read(case_id))

    async def _read(self, case_id: int) -> None:
        try:
            while True:
                self._again.discard(case_id)
                async with self.session.get(f"{self.desk_url}/console/live/cases/{case_id}") as response:
                    transcript = (await response.json())["transcript"]
                now = time.perf_counter()
                shown = {line["text"] for line in transcript}
                for text, future in list(self.waiting.get(case_id, {}).items()):
                    if text in shown and not future.done():
                        future.set_result(now)
                        del self.waiting[case_id][text]
                if case_id not in self._again:
                    return
        finally:
            self._reading.discard(case_id)

    async def close(self) -> None:
        if self._stream:
            self._stream.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await self._stream
        await self.session.close()


class Gate:
    """Opens once every merchant has arrived (handed over, or failed on the way)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.opened = asyncio.Event()

    def arrive(self) -> None:
        self.expected -= 1
        if self.expected <= 0:
            self.opened.set()

    async def wait(self, seconds: float) -> None:
        await asyncio.wait_for(self.opened.wait(), seconds)


class Merchant:
    """A merchant on the widget's socket.io channel."""

    def __init__(self, rasa_url: str, number: int) -> None:
        self.rasa_url = rasa_url
        self.session_id = f"bench-handoff-{number}-{secrets.token_hex(4)}"
        self.client = socketio.AsyncClient(reconnection=False)
        self.said: "asyncio.Queue[tuple[float, str]]" = asyncio.Queue()
        self.client.on("bot_uttered", self._bot_uttered)

    async def _bot_uttered(self, data: Dict[str, Any]) -> None:
        # What the widget shows: the channel writes markdown characters as entities or
        # backslash escapes (PX&#45;7K2Q9M) so that the text shows as typed.
        text = html.unescape(str(data.get("text") or ""))
        shown = re.sub(r"\\(.)", r"\1", text).replace("  \n", "\n")
        await self.said.put((time.perf_counter(), shown))

    async def connect(self) -> None:
        confirmed = asyncio.get_running_loop().create_future()
        self.client.on("session_confirm", lambda _: confirmed.done() or confirmed.set_result(True))
        # Long polling: this python-engineio's websocket client needs a newer aiohttp than
        # Rasa pins. The server pushes into the open poll at once, as into a websocket.
        await self.client.connect(self.rasa_url, socketio_path="/socket.io", transports=["polling"])
        await self.client.emit("session_request", {"session_id": self.session_id})
        await asyncio.wait_for(confirmed, 10)

    async def say(self, text: str) -> None:
        await self.client.emit("user_uttered", {"message": text, "session_id": self.session_id})

    async def until(self, needle: "re.Pattern[str] | str", seconds: float) -> "tuple[float, str]":
        """The first bot message containing ``needle`` (others are read past)."""
        deadline = time.perf_counter() + seconds
        while True:
            at, text = await asyncio.wait_for(self.said.get(), max(0.0, deadline - time.perf_counter()))
            if needle.search(text) if isinstance(needle, re.Pattern) else needle in text:
                return at, text

    async def to_a_person(self, seconds: float) -> str:
        """Walk to the handoff; the ticket number the bot gave."""
        for text in TO_A_PERSON[:-1]:
            await self.say(text)
            await self.until("", seconds)  # any answer: the next question
        await self.say(TO_A_PERSON[-1])
        _, text = await self.until(TICKET, seconds)
        return TICKET.search(text).group(0)


async def one_merchant(
    number: int,
    rasa_url: str,
    desk_url: str,
    token: str,
    agent: AgentPage,
    rounds: int,
    think_s: float,
    timeout: float,
    outcome: HandoffOutcome,
    handed_over: Gate,
) -> None:
    """One merchant's handoff, then its timed rounds in both directions."""
    merchant = Merchant(rasa_url, number)
    pace = random.Random(number)
    headers = {"Authorization": f"Bearer {token}"}
    arrived, stage = False, "to a person"
    try:
        await merchant.connect()
        ticket = await merchant.to_a_person(timeout)
        async with aiohttp.ClientSession(headers=headers) as api:
            async with api.get(f"{desk_url}/api/escalations", params={"ticket": ticket}) as response:
                case_id = (await response.json())["escalations"][0]["id"]
            arrived = True
            handed_over.arrive()
            # Every merchant is waiting for a person: now the timed rounds, all at once.
            await handed_over.wait(timeout * len(TO_A_PERSON) * 4)
            for round_number in range(rounds):
                words = f"M{number}R{round_number} 刷卡还是报1000"
                stage = f"round {round_number}: to the agent"
                seen = agent.expect(case_id, words)
                await asyncio.sleep(pace.uniform(0, think_s))
                sent = time.perf_counter()
                await merchant.say(words)
                outcome.to_agent_ms.append((await asyncio.wait_for(seen, timeout) - sent) * 1000)
                stage = f"round {round_number}: to the merchant"
                reply = f"A{number}R{round_number} 请重启一次终端"
                await asyncio.sleep(pace.uniform(0, think_s))
                sent = time.perf_counter()
                async with api.post(f"{desk_url}/api/escalations/{case_id}/reply", json={"text": reply, "agent": AGENT}) as response:
                    if response.status >= 300:
                        raise RuntimeError(f"reply answered {response.status}")
                arrived, _ = await merchant.until(reply, timeout)
                outcome.to_merchant_ms.append((arrived - sent) * 1000)
    except (asyncio.TimeoutError, aiohttp.ClientError, socketio.exceptions.SocketIOError, RuntimeError, KeyError, IndexError) as error:
        outcome.errors.append(f"merchant {number}, {stage}: {error.__class__.__name__} {error}")
    finally:
        if not arrived:
            handed_over.arrive()  # the others must not wait for a merchant who failed
        with contextlib.suppress(Exception):
            await merchant.client.disconnect()


async def drive(
    rasa_url: str, desk_url: str, token: str, password: str, merchants: int, rounds: int, think_s: float, timeout: float
) -> HandoffOutcome:
    """All merchants at once against one logged-in agent page."""
    outcome = HandoffOutcome()
    agent = AgentPage(desk_url, password)
    await agent.login()
    handed_over = Gate(merchants)
    try:
        await asyncio.gather(
            *(one_merchant(n, rasa_url, desk_url, token, agent, rounds, think_s, timeout, outcome, handed_over) for n in range(merchants))
        )
    finally:
        await agent.close()
    return outcome


def create_agent(database_url: str, run_dir: Path) -> str:
    """The bench's console account in the desk's database; its password."""
    done = subprocess.run(
        [sys.executable, "-m", "support_desk.accounts", "create", AGENT],
        cwd=ROOT,
        env={"DESK_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", "SQLALCHEMY_SILENCE_UBER_WARNING": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.rsplit(":", 1)[1].strip()


def handoff_part(run_dir: Path, settings: Dict[str, Any], model: Path) -> Dict[str, Any]:
    """Start the one-host stack, measure ``settings['handoff']``, stop; the figures."""
    part = settings["handoff"]
    folder = run_dir / "handoff"
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    database = f"sqlite:///{folder / 'desk.db'}"
    password = create_agent(database, folder)
    with one_host(folder, model, database, token, "rasa-handoff") as (stack, _, desk_url):
        outcome = asyncio.run(
            drive(stack.url, desk_url, token, password, part["merchants"], part["rounds"], part["think_s"], settings["timeout_s"])
        )
    return {"merchants": part["merchants"], "rounds": part["rounds"], "think_s": part["think_s"], **outcome.figures()}

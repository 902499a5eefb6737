"""Load and soak: 50 merchants at once for 2 minutes against a real stack (`make test-slow`).

Real processes on 127.0.0.1, wired as `make run` wires them (Rasa with the REST channel
and the SQL tracker store on a SQLite file, the action server, the desk on SQLite). Each
simulated merchant (an aiohttp client) holds one whole conversation after another until
the time is up, with a seeded random choice of:

* questions: how to fix 1000, what it means, was the customer charged, an FAQ on fees;
* guided checks fixed at the restart step, then a rating;
* a handoff: "转人工", the three details, the ticket; a message while paused; then the
  merchant's "agent" claims, replies and resolves through the desk API, and the bot
  answers the merchant again.

Asserted: no 5xx and no failed request anywhere; no lost message (every message got a bot
answer, except those written while paused, which must be in the case's transcript); no
lost or doubled escalation (every ticket the bot gave is exactly one desk case, and the
desk has no other case); memory flat. The RSS of each process is sampled every
``SAMPLE_SECONDS`` and written to ``results/soak_rss.json`` (and printed).

Memory bound: the mean RSS of the last quarter of the run must stay within 1.25 × the mean
of the first quarter after the warm-up (the first ``WARMUP_SECONDS``, when TensorFlow,
SQLAlchemy pools and caches fill). A leak that adds 25 % to a process in under two minutes
under this load would exhaust the machine within hours; normal allocator noise and the
growth of per-conversation locks and caches stay well below it. A subtler leak needs a
longer soak: ``SOAK_SECONDS`` and ``SOAK_MERCHANTS`` override the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List

import aiohttp
import pytest

from tests.harness.processes import ROOT
from tests.harness.stack import RASA_TOKEN, Stack

pytestmark = pytest.mark.slow

MERCHANTS = int(os.environ.get("SOAK_MERCHANTS", "50"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "120"))
SAMPLE_SECONDS = 3.0
WARMUP_SECONDS = 20.0
GROWTH_BOUND = 1.25
RESULTS = ROOT / "results" / "soak_rss.json"
REPLY = "您好，我是客服，正在处理。"

QUESTIONS = [
    "pos机报1000咋整",
    "1000是什么意思",
    "顾客的钱扣了吗",
    "对了 手续费怎么收",
    "what does error 1000 mean",
    "was the customer charged",
]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (from /proc)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, AttributeError):
            continue
        pids += [int(child) for child in children]
    return round(total / 1024, 1)


class Tally:
    """What every simulated merchant saw."""

    def __init__(self) -> None:
        self.statuses: Dict[int, int] = {}
        self.failures: List[str] = []
        self.unanswered: List[str] = []
        self.paused_messages: List[tuple] = []  # (case id, text)
        self.tickets: List[str] = []
        self.handoffs: List[tuple] = []  # (case id, sender)
        self.messages = 0
        self.conversations = {"questions": 0, "checks": 0, "handoff": 0}
        self.latencies: List[float] = []


class Merchant:
    def __init__(self, stack: Stack, session: aiohttp.ClientSession, tally: Tally, number: int) -> None:
        self.stack, self.session, self.tally = stack, session, tally
        self.number = number
        self.random = random.Random(number)

    async def call(self, method: str, url: str, body: Any = None, headers: Dict[str, str] = None) -> Any:
        started = time.monotonic()
        try:
            async with self.session.request(method, url, json=body, headers=headers) as response:
                self.tally.statuses[response.status] = self.tally.statuses.get(response.status, 0) + 1
                payload = await response.json(content_type=None)
                if response.status >= 400:
                    self.tally.failures.append(f"{method} {url} → {response.status} {payload}")
                return payload
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            self.tally.failures.append(f"{method} {url} → {error!r}")
            return None
        finally:
            if "/webhooks/" in url:
                self.tally.latencies.append(time.monotonic() - started)

    async def say(self, sender: str, text: str, expect_answer: bool = True) -> List[str]:
        self.tally.messages += 1
        answers = await self.call("POST", f"{self.stack.rasa_url}/webhooks/rest/webhook", {"sender": sender, "message": text})
        texts = [a.get("text") or "" for a in answers or []]
        if expect_answer and not texts:
            self.tally.unanswered.append(f"{sender}: {text}")
        await asyncio.sleep(self.random.uniform(0.3, 1.5))  # the merchant reads and types
        return texts

    async def desk(self, method: str, path: str, body: Any = None) -> Any:
        return await self.call(method, self.stack.desk_url + path, body, self.stack.desk.auth)

    async def questions(self, sender: str) -> None:
        for text in self.random.sample(QUESTIONS, 3):
            await self.say(sender, text)

    async def checks(self, sender: str) -> None:
        for text in (
            "/start_diagnostics",
            "/inform_not_fixed",
            '/inform{"terminal_model": "pax_a920"}',
            "/inform_fixed",
            '/rate{"rating": "5"}',
        ):
            await self.say(sender, text)

    async def handoff(self, sender: str) -> None:
        await self.say(sender, "pos机报1000咋整")
        for text in ("转人工", "商户号898310048160123", "13812345678"):
            await self.say(sender, text)
        answers = await self.say(sender, "从早上开始刷卡都报1000")
        found = re.search(r"PX-[0-9A-Z]{6}", " ".join(answers))
        if not found:
            self.tally.failures.append(f"{sender}: no ticket in {answers}")
            return
        ticket = found.group(0)
        self.tally.tickets.append(ticket)
        waiting = f"还要等多久 {sender}"
        await self.say(sender, waiting, expect_answer=False)  # paused: the bot is quiet
        cases = (await self.desk("GET", f"/api/escalations?ticket={ticket}") or {}).get("escalations") or []
        if len(cases) != 1:
            self.tally.failures.append(f"{sender}: {len(cases)} desk cases for {ticket}")
            return
        case_id = cases[0]["id"]
        self.tally.paused_messages.append((case_id, waiting))
        await self.desk("POST", f"/api/escalations/{case_id}/claim", {"agent": f"agent-{self.number}"})
        # 201 delivered, or 202 kept and retried when Rasa is too slow to confirm in time:
        # checked after the run (delivered, and exactly once in the merchant's chat).
        await self.desk("POST", f"/api/escalations/{case_id}/reply", {"text": REPLY})
        await self.desk("POST", f"/api/escalations/{case_id}/resolve", {"note": "soak", "category": "server"})
        self.tally.handoffs.append((case_id, sender))
        await self.say(sender, "1000是什么意思")  # the bot answers again

    async def run(self, deadline: float) -> None:
        conversation = 0
        await asyncio.sleep(self.random.uniform(0, 3))  # do not all start in the same millisecond
        while time.monotonic() < deadline:
            conversation += 1
            sender = f"soak-{self.number}-{conversation}"
            kind = self.random.choices(["questions", "checks", "handoff"], weights=[4, 3, 2])[0]
            self.tally.conversations[kind] += 1
            await getattr(self, kind)(sender)


async def sample_memory(stack: Stack, started: float, samples: List[Dict[str, float]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(
            {
                "t": round(time.monotonic() - started, 1),
                "rasa": rss_mb(stack.rasa.pid),
                "actions": rss_mb(stack.actions.pid),
                "desk": rss_mb(stack.desk.process.pid),
            }
        )
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        except asyncio.TimeoutError:
            pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    directory = tmp_path_factory.mktemp("soak")
    running = Stack(directory)
    yield running
    running.stop()


async def test_fifty_merchants_for_two_minutes(stack):
    tally = Tally()
    samples: List[Dict[str, float]] = []
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0)
    started = time.monotonic()
    sampler = asyncio.create_task(sample_memory(stack, started, samples, stop))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        merchants = [Merchant(stack, session, tally, n) for n in range(MERCHANTS)]
        # Conversations in flight at the deadline finish; none lasts long (bounded).
        await asyncio.wait_for(asyncio.gather(*(m.run(started + SECONDS) for m in merchants)), SECONDS + 600)
        elapsed = time.monotonic() - started

        # Lost messages written while paused? Each must be in its case's transcript.
        checker = Merchant(stack, session, tally, -1)
        for case_id, text in tally.paused_messages:
            case = await checker.desk("GET", f"/api/escalations/{case_id}") or {}
            kept = [m["text"] for m in case.get("transcript", []) if m.get("kind") == "merchant"]
            if text not in kept:
                tally.failures.append(f"paused message lost: case {case_id} {text!r}")
        # Every case at the desk: the list comes in pages (keyset cursor, at most 200 a page).
        cases: List[Dict[str, Any]] = []
        query = "limit=200"
        for _ in range(100):  # bounded: 20,000 cases
            page = await checker.desk("GET", f"/api/escalations?{query}") or {}
            cases += page.get("escalations", [])
            if not page.get("next_cursor"):
                break
            query = f"limit=200&cursor={page['next_cursor']}"

        # Every agent reply and closing message reaches the merchant's chat exactly once
        # (the desk retries every 10 s what Rasa did not confirm).
        async def undelivered() -> List[int]:
            waiting = []
            for case_id, _ in tally.handoffs:
                case = await checker.desk("GET", f"/api/escalations/{case_id}") or {}
                if any(not m["delivered"] for m in case.get("transcript", []) if m["role"] == "agent"):
                    waiting.append(case_id)
            return waiting

        deadline = time.monotonic() + 120
        while await undelivered() and time.monotonic() < deadline:
            await asyncio.sleep(2)
        tally.failures += [f"agent messages of case {c} never delivered" for c in await undelivered()]
        for _case_id, sender in tally.handoffs:
            tracker = await checker.call("GET", f"{stack.rasa_url}/conversations/{sender}/tracker?token={RASA_TOKEN}") or {}
            ids = [
                (e.get("metadata") or {}).get("desk_message_id")
                for e in tracker.get("events", [])
                if e["event"] == "bot" and (e.get("metadata") or {}).get("desk_message_id")
            ]
            texts = [e.get("text") for e in tracker.get("events", []) if e["event"] == "bot"]
            if texts.count(REPLY) != 1 or len(ids) != len(set(ids)):
                tally.failures.append(f"{sender}: agent reply {texts.count(REPLY)}×, desk ids {ids}")
        report_delivery = {"replies_answered_202": tally.statuses.get(202, 0)}
    stop.set()
    await sampler

    # Memory curve and its summary.
    curve = [s for s in samples if s["t"] >= WARMUP_SECONDS]
    quarter = max(1, len(curve) // 4)
    summary = {}
    for process in ("rasa", "actions", "desk"):
        first = statistics.mean(s[process] for s in curve[:quarter])
        last = statistics.mean(s[process] for s in curve[-quarter:])
        summary[process] = {
            "first_quarter_mean_mb": round(first, 1),
            "last_quarter_mean_mb": round(last, 1),
            "growth": round(last / first, 3),
            "max_mb": max(s[process] for s in samples),
        }
    report = {
        "merchants": MERCHANTS,
        "seconds": round(elapsed, 1),
        "messages": tally.messages,
        "messages_per_second": round(tally.messages / elapsed, 2),
        "conversations": tally.conversations,
        "escalations": len(tally.tickets),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        **report_delivery,
        "latency_s": {
            "median": round(statistics.median(tally.latencies), 2),
            "p95": round(sorted(tally.latencies)[int(0.95 * len(tally.latencies))], 2),
            "max": round(max(tally.latencies), 2),
        },
        "sample_seconds": SAMPLE_SECONDS,
        "warmup_seconds": WARMUP_SECONDS,
        "growth_bound": GROWTH_BOUND,
        "rss_summary": summary,
        "rss_mb": samples,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    print("\nsoak:", json.dumps({k: v for k, v in report.items() if k != "rss_mb"}, ensure_ascii=False))
    print("RSS MB (t, rasa, actions, desk):", " ".join(f"{s['t']:.0f}:{s['rasa']:.0f}/{s['actions']:.0f}/{s['desk']:.0f}" for s in samples))

    assert not [s for s in tally.statuses if s >= 500], report["statuses"]
    assert tally.failures == [], tally.failures[:20]
    assert tally.unanswered == [], tally.unanswered[:20]
    assert tally.conversations["handoff"] > 0 and tally.messages >= MERCHANTS * 5
    # Every ticket given is exactly one desk case, and there is no other case.
    assert sorted(c["ticket"] for c in cases) == sorted(tally.tickets)
    assert all(stack_process.poll() is None for stack_process in (stack.rasa, stack.actions, stack.desk.process))
    for process, figures in summary.items():
        assert figures["growth"] <= GROWTH_BOUND, (process, figures)

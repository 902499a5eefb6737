"""`make bench`'s outage surge: hundreds of merchants at once while the gateway is down.

The stack is the production one on one host (``python -m rasa_server run`` with the
project's endpoints.yml and credentials.yml, its action server, the desk), as in the
handoff part. Two phases, bounded in count and time (``surge`` in settings.yml):

1. **No incident posted.** ``proposal_merchants`` merchants report error 1000 within
   ``proposal_spread_s`` and accept the checks; the bot reports each to the desk. Timed:
   from the report that crosses the desk's threshold (``incidents.proposal_threshold`` of
   support_desk/settings.yml) until ``GET /api/incidents?all=1`` shows the proposal. The
   operator then dismisses it.
2. **Incident active** (scope: everyone). ``merchants`` merchants start within
   ``spread_s``, over the widget's socket.io channel or REST, in Chinese or English
   (seeded). Each reports 1000 and must hear about the incident in the first answer to
   that report, before any check is offered; then ``person_share`` of them ask for a
   person (and must be linked to the incident's case, not get a ticket of their own),
   the others ask to be told when it is back. Then the incident is closed through the
   API, timed until every merchant has the "it is over" message: on its socket, or (REST, which has no push) in its conversation
   through Rasa's HTTP API. Afterwards: the desk holds one case (the incident's) and every
   merchant is linked to it once; the RSS of each process at the start and the end.

A message that does not get its answer within ``timeout_s`` is an error; nothing is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import quote

import aiohttp
import socketio
import yaml

from bench.handoff import Merchant, summary
from bench.servers import ROOT, rss_kib
from bench.stack import RasaStack, one_host

FIRST = {"zh": "pos机报1000怎么办", "en": "my pos terminal shows error 1000, what do I do"}
# The offer's "Yes, guide me" button, as the widget sends it (phase 1: no incident to tell).
ACCEPT = "/start_diagnostics"
TOLD = {"zh": "已知故障", "en": "known outage"}
OVER = {"zh": "支付服务已恢复", "en": "Payment service is back"}
# The handoff form's questions: a reference, a phone number, a one-line description.
FORM_ANSWERS = {
    "zh": ["商户号898310048160123", "13812345678", "从早上开始刷卡都报1000"],
    "en": ["merchant number 898310048160123", "13812345678", "every card payment shows 1000 since this morning"],
}
SHENZHEN_PREFIX = "8984403"
WITH_NUMBER = {"zh": "pos机报1000怎么办，商户号{number}", "en": "my pos terminal shows error 1000, merchant number {number}"}
INCIDENT_TICKET = re.compile(r"INC-[A-Z0-9]+")
OWN_TICKET = re.compile(r"PX-[A-Z0-9]{6}")
# How often a REST merchant looks into its conversation for the all-clear.
REST_POLL_S = 5.0
INCIDENT_TEXT = {"zh": "支付网关故障，正在抢修", "en": "Payment gateway outage, being repaired"}
THRESHOLD_FILE = ROOT / "support_desk" / "settings.yml"


@dataclass
class SurgeOutcome:
    """What the merchants saw, with its timings (ms and s) and what went wrong."""

    answer_ms: List[float] = field(default_factory=list)
    told_first: int = 0
    linked_for_person: int = 0
    subscribed: int = 0
    own_tickets: int = 0
    told_over_s: List[float] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)


class RestMerchant:
    """A merchant on the REST channel: each message's answers come back in the response."""

    def __init__(self, rasa_url: str, number: int, http: aiohttp.ClientSession) -> None:
        self.rasa_url = rasa_url
        self.session_id = f"bench-surge-rest-{number}-{secrets.token_hex(4)}"
        self.http = http
        self.said: "asyncio.Queue[tuple[float, str]]" = asyncio.Queue()

    async def connect(self) -> None:
        """Nothing to open: REST is one request per message."""

    async def say(self, text: str) -> None:
        async with self.http.post(f"{self.rasa_url}/webhooks/rest/webhook", json={"sender": self.session_id, "message": text}) as response:
            if response.status != 200:
                raise RuntimeError(f"REST answered {response.status}")
            answers = await response.json()
        now = time.perf_counter()
        for answer in answers:
            await self.said.put((now, str(answer.get("text") or "")))

    until = Merchant.until

    async def disconnect(self) -> None:
        """Nothing to close."""


async def ask(merchant: Any, text: str, needle: "re.Pattern[str] | str", timeout: float, outcome: SurgeOutcome) -> str:
    """Say ``text``; the first answer holding ``needle`` (its latency is recorded)."""
    sent = time.perf_counter()
    await merchant.say(text)
    at, answer = await merchant.until(needle, timeout)
    outcome.answer_ms.append((at - sent) * 1000)
    return answer


def make_merchant(number: int, rasa_url: str, http: aiohttp.ClientSession, rest: bool) -> Any:
    """A REST or a socket.io merchant."""
    return RestMerchant(rasa_url, number, http) if rest else Merchant(rasa_url, number)


async def disconnect(merchant: Any) -> None:
    with contextlib.suppress(Exception):
        if isinstance(merchant, RestMerchant):
            await merchant.disconnect()
        else:
            await merchant.client.disconnect()


async def report_one(
    number: int, rasa_url: str, http: aiohttp.ClientSession, delay: float, timeout: float, outcome: SurgeOutcome, answered: List[float]
) -> None:
    """Phase 1: one merchant reports 1000 and accepts the checks (no incident: the first step)."""
    await asyncio.sleep(delay)
    merchant = make_merchant(10_000 + number, rasa_url, http, rest=number % 2 == 1)
    language = "en" if number % 3 == 0 else "zh"
    try:
        await merchant.connect()
        # Shops of one city (Shenzhen, data/knowledge/regions.yml: 8984403…) give their number.
        number_text = f"{SHENZHEN_PREFIX}{number:08d}"
        await ask(merchant, WITH_NUMBER[language].format(number=number_text), "", timeout, outcome)
        await ask(merchant, ACCEPT, "", timeout, outcome)
        answered.append(time.perf_counter())
    except (asyncio.TimeoutError, aiohttp.ClientError, socketio.exceptions.SocketIOError, RuntimeError) as error:
        outcome.errors.append(f"reporter {number}: {error.__class__.__name__} {error}")
    finally:
        await disconnect(merchant)


async def surge_one(
    number: int,
    rasa_url: str,
    http: aiohttp.ClientSession,
    delay: float,
    part: Dict[str, Any],
    timeout: float,
    outcome: SurgeOutcome,
    closed: asyncio.Event,
    closed_at: List[float],
    tracker_of,
) -> None:  # noqa: ANN001
    """Phase 2: one merchant during the incident, until it has the "it is over" message."""
    pace = random.Random(number)
    rest = pace.random() < part["rest_share"]
    language = "en" if pace.random() < part["en_share"] else "zh"
    person = pace.random() < part["person_share"]
    await asyncio.sleep(delay)
    merchant = make_merchant(number, rasa_url, http, rest)
    stage = "reporting"
    try:
        await merchant.connect()
        # Told in the very first answer to the report: no fix steps, no offer of checks before it.
        first = await ask(merchant, FIRST[language], "", timeout, outcome)
        if TOLD[language] not in first:
            raise RuntimeError(f"the first answer to the report is not the incident: {first[:80]!r}")
        outcome.told_first += 1
        if person:
            stage = "asking for a person"
            # The handoff form asks only for what it is missing: answer until a ticket shows.
            tickets = re.compile(f"{INCIDENT_TICKET.pattern}|{OWN_TICKET.pattern}")
            text = await ask(merchant, "/request_human", "", timeout, outcome)
            for answer in FORM_ANSWERS[language]:
                if tickets.search(text):
                    break
                text = await ask(merchant, answer, "", timeout, outcome)
            if OWN_TICKET.search(text):
                outcome.own_tickets += 1
                raise RuntimeError("escalated on its own instead of linked to the incident")
            if not INCIDENT_TICKET.search(text):
                raise RuntimeError(f"no incident case after the handoff form: {text[:80]!r}")
            outcome.linked_for_person += 1
        else:
            stage = "subscribing"
            await ask(merchant, "/subscribe_incident", INCIDENT_TICKET, timeout, outcome)
            outcome.subscribed += 1
        stage = "waiting for the all-clear"
        await closed.wait()
        # The target's own bound (all told within target_all_told_s), not one message's.
        wait = max(timeout, part["target_all_told_s"])
        if rest:
            stored = await told_in_tracker(tracker_of, merchant.session_id, OVER[language], wait)
            outcome.told_over_s.append(stored - closed_at[1])
        else:
            at, _ = await merchant.until(OVER[language], wait)
            outcome.told_over_s.append(at - closed_at[0])
    except (asyncio.TimeoutError, aiohttp.ClientError, socketio.exceptions.SocketIOError, RuntimeError) as error:
        outcome.errors.append(
            f"merchant {number} ({'rest' if rest else 'socketio'}, {language}), {stage}: {error.__class__.__name__} {error}"
        )
    finally:
        await disconnect(merchant)


async def told_in_tracker(tracker_of, sender: str, needle: str, timeout: float) -> float:  # noqa: ANN001
    """When (wall clock, Rasa's timestamp of the event) the bot message holding ``needle``
    was stored in the conversation, which is when a REST caller can read it.

    Looked up every ``REST_POLL_S``: the bot event's own timestamp is the figure, so the
    lookups need not be frequent, and frequent ones (a whole tracker each) would be the
    load that slows the sending being measured.
    """
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        await asyncio.sleep(REST_POLL_S)
        for event in (await tracker_of(sender)).get("events", []):
            if event.get("event") == "bot" and needle in str(event.get("text") or ""):
                return float(event["timestamp"])
    raise asyncio.TimeoutError(f"no all-clear in the conversation within {timeout} s")


def threshold() -> int:
    """The desk's proposal threshold (support_desk/settings.yml)."""
    return int(yaml.safe_load(THRESHOLD_FILE.read_text(encoding="utf-8"))["incidents"]["proposal_threshold"])


async def drive(stack: RasaStack, desk_url: str, token: str, part: Dict[str, Any], timeout: float, rss) -> Dict[str, Any]:  # noqa: ANN001
    """Both phases against the running stack; the figures."""
    headers = {"Authorization": f"Bearer {token}"}
    result: Dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        # A few lookups at a time: the bench's own reads must not crowd out the sending.
        reading = asyncio.Semaphore(4)

        async def tracker_of(sender: str) -> Dict[str, Any]:
            url = f"{stack.url}/conversations/{quote(sender, safe='')}/tracker?token={stack.token}"
            async with reading, http.get(url) as response:
                return await response.json()

        async def incidents(every: bool) -> List[Dict[str, Any]]:
            async with http.get(f"{desk_url}/api/incidents", params={"all": "1"} if every else {}, headers=headers) as response:
                return (await response.json())["incidents"]

        # Phase 1: no incident; the reports make a proposal.
        reporters = part["proposal_merchants"]
        proposal = SurgeOutcome()
        answered: List[float] = []
        reporting = asyncio.gather(
            *(
                report_one(n, stack.url, http, part["proposal_spread_s"] * n / reporters, timeout, proposal, answered)
                for n in range(reporters)
            )
        )
        proposed_at: Optional[float] = None
        deadline = time.perf_counter() + part["proposal_spread_s"] + timeout
        while proposed_at is None and time.perf_counter() < deadline:
            if any(item["status"] == "proposed" for item in await incidents(every=True)):
                proposed_at = time.perf_counter()
            else:
                await asyncio.sleep(0.5)
        await reporting
        crossing = sorted(answered)[threshold()] if len(answered) > threshold() else None
        result["proposal"] = {
            "merchants": reporters,
            "spread_s": part["proposal_spread_s"],
            "threshold": threshold(),
            "raised": proposed_at is not None,
            "seconds_after_crossing": round(max(0.0, proposed_at - crossing), 1) if proposed_at and crossing else None,
            "errors": len(proposal.errors),
            "error_examples": proposal.errors[:5],
        }
        for item in await incidents(every=True):
            if item["status"] == "proposed":
                async with http.post(f"{desk_url}/api/incidents/{item['id']}/dismiss", headers=headers) as response:
                    response.raise_for_status()

        # Phase 2: the incident is posted; the surge; the close.
        async with http.post(f"{desk_url}/api/incidents", headers=headers, json={"message": INCIDENT_TEXT, "region": "all"}) as response:
            if response.status != 201:
                raise RuntimeError(f"posting the incident answered {response.status}: {await response.text()}")
            incident = await response.json()
        outcome = SurgeOutcome()
        closed = asyncio.Event()
        closed_at: List[float] = []
        rss_start = rss()
        merchants = part["merchants"]
        spread = random.Random(17)
        surging = asyncio.gather(
            *(
                surge_one(n, stack.url, http, spread.uniform(0, part["spread_s"]), part, timeout, outcome, closed, closed_at, tracker_of)
                for n in range(merchants)
            )
        )
        # Close once every merchant has subscribed or been linked (or failed on the way).
        started = time.perf_counter()
        while (
            outcome.linked_for_person + outcome.subscribed + len(outcome.errors) < merchants
            and time.perf_counter() - started < part["spread_s"] + timeout * 8
        ):
            await asyncio.sleep(1)
        closed_at.extend((time.perf_counter(), time.time()))
        async with http.post(
            f"{desk_url}/api/incidents/{incident['id']}/close", headers=headers, json={"note": "bench: gateway back"}
        ) as response:
            response.raise_for_status()
            planned = (await response.json())["notices_planned"]
        closed.set()
        await surging
        rss_end = rss()
        async with http.get(f"{desk_url}/api/incidents/{incident['id']}", headers=headers) as response:
            after = await response.json()
        async with http.get(f"{desk_url}/api/escalations", params={"limit": "200"}, headers=headers) as response:
            cases = (await response.json())["escalations"]
        async with http.post(f"{desk_url}/api/incidents/{incident['id']}/close", headers=headers, json={}) as response:
            planned_again = (await response.json()).get("notices_planned")
    told = sorted(outcome.told_over_s)
    result["surge"] = {
        "merchants": merchants,
        "spread_s": part["spread_s"],
        "answer_latency": summary(outcome.answer_ms),
        "told_first": outcome.told_first,
        "linked_for_person": outcome.linked_for_person,
        "subscribed": outcome.subscribed,
        "own_tickets": outcome.own_tickets,
        "cases_at_the_desk": len(cases),
        "incident_cases": sum(1 for case in cases if str(case.get("ticket", "")).startswith("INC-")),
        "linked_at_the_desk": after["merchants"],
        "notices_planned": planned,
        "notices_planned_closing_again": planned_again,
        "told_over": len(told),
        "seconds_until_all_told": round(told[-1], 1) if told else None,
        "p50_s_until_told": round(told[len(told) // 2], 1) if told else None,
        "errors": len(outcome.errors),
        "error_examples": outcome.errors[:5],
        "rss_mib": {"start": rss_start, "end": rss_end},
    }
    return result


def surge_part(run_dir: Path, settings: Dict[str, Any], model: Path) -> Dict[str, Any]:
    """Start the one-host stack, run both phases of ``settings['surge']``, stop; the figures."""
    part = settings["surge"]
    folder = run_dir / "surge"
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    database = f"sqlite:///{folder / 'desk.db'}"
    with one_host(folder, model, database, token, "rasa-surge") as (stack, desk, desk_url):

        def rss() -> Dict[str, float]:
            processes = {service.name: service.pid for service in [*stack.services, desk] if service.alive()}
            return {name: round(rss_kib(pid) / 1024, 1) for name, pid in processes.items()}

        return asyncio.run(drive(stack, desk_url, token, part, settings["timeout_s"], rss))


def checks(result: Dict[str, Any], part: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The surge's targets, met or not."""
    surge, proposal = result["surge"], result["proposal"]
    everyone = surge["merchants"]
    return [
        {
            "target": "surge: 0 errors, every merchant told first",
            "value": surge["errors"],
            "met": surge["errors"] == 0 and surge["told_first"] == everyone,
        },
        {
            "target": "surge: one incident case, no merchant's own ticket",
            "value": f"{surge['incident_cases']} incident / {surge['cases_at_the_desk']} cases, {surge['own_tickets']} own",
            "met": surge["incident_cases"] == 1 and surge["cases_at_the_desk"] == 1 and surge["own_tickets"] == 0,
        },
        {
            "target": f"surge: every merchant told it is over within {part['target_all_told_s']} s",
            "value": surge["seconds_until_all_told"],
            "met": surge["told_over"] == everyone and (surge["seconds_until_all_told"] or 1e9) <= part["target_all_told_s"],
        },
        {
            "target": "surge: closing again sends nothing",
            "value": surge["notices_planned_closing_again"],
            "met": surge["notices_planned_closing_again"] == 0,
        },
        {
            "target": f"no incident posted: a proposal within {part['target_proposal_s']} s of crossing the threshold",
            "value": proposal["seconds_after_crossing"],
            "met": proposal["raised"] and (proposal["seconds_after_crossing"] or 0) <= part["target_proposal_s"],
        },
    ]
